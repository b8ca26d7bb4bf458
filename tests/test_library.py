"""The adapter library (app/library.py) and its tab: list, rename, delete, export, and import with every refusal.

Each refused import asserts its message and that nothing was written: the library folder holds
exactly what it held before, and no file escaped next to it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

from app.library import (AdapterEntry, delete_adapter, export_adapter, import_archive, list_adapters, output_folder,
                         remove_stale_imports, rename_adapter, run_folder)
from app.widgets.library_tab import LibraryTab
from app.workers.jobs import Jobs
from aura_model.bundle import load_bundle, read_bundle_config
from aura_model.config import RuntimeConfig
from aura_model.errors import AuraError
from aura_model.testing import save_tiny_base
from helpers import make_bundle

EVENT_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A tiny bundle that carries its base (importable anywhere), and one that names a base this machine lacks."""
    root = tmp_path_factory.mktemp("lib-src")
    carried, _ = make_bundle(root / "carried", "llama", include_base=True)
    lacking, _ = make_bundle(root / "lacking", "llama", include_base=False)  # base.id "tiny-llama": not a folder
    return {"carried": carried, "lacking": lacking, "root": root}


@pytest.fixture
def library(tmp_path):
    lib = tmp_path / "home" / "adapters"
    lib.mkdir(parents=True)
    return lib


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def install(made, library: Path, name: str) -> Path:
    dst = library / name
    shutil.copytree(made["carried"], dst)
    return dst


def tar_with(path: Path, bundle: Path, top: str = "b", extra=()) -> Path:
    """A tar.gz of ``bundle`` under ``top/`` plus ``extra`` TarInfo members (name, type, data, linkname)."""
    with tarfile.open(path, "w:gz") as tf:
        tf.add(bundle, arcname=top)
        for name, kind, data, link in extra:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = link
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tf.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return path


def refused(archive: Path, library: Path, *words: str) -> str:
    """Import ``archive``, expect a refusal naming ``words``, and that nothing was written."""
    before = snapshot(library)
    around = snapshot(library.parent)
    with pytest.raises(AuraError) as info:
        import_archive(archive, library)
    message = str(info.value)
    for w in words:
        assert w in message, message
    assert snapshot(library) == before, "the refused import left files in the library"
    assert snapshot(library.parent) == around, "the refused import wrote next to the library"
    assert not list(library.parent.parent.rglob("evil.txt")), "a member escaped"
    return message


# -- listing, rename, delete ------------------------------------------------------------------------


def test_list_shows_the_default_and_the_library_with_base_teacher_metrics_and_size(made, library):
    install(made, library, "mine")
    (library / ".runs" / "mine").mkdir(parents=True)  # run records and half-imported folders are not adapters
    (library / ".import-x").mkdir()
    (library / "notes").mkdir()  # a folder without aura_config.json is not listed
    entries = list_adapters(library, made["lacking"])
    assert [e.name for e in entries] == ["default", "mine"]
    default, mine = entries
    assert default.builtin and not mine.builtin
    assert mine.base == "tiny-llama" and mine.teacher == "tiny-whisper" and mine.problem == ""
    assert mine.size_bytes == sum(p.stat().st_size for p in (library / "mine").rglob("*") if p.is_file())
    assert mine.created > 0


def test_an_unreadable_adapter_is_listed_with_its_problem(made, library):
    broken = install(made, library, "broken")
    (broken / "aura_config.json").write_text("{not json")
    (entry,) = list_adapters(library)
    assert entry.name == "broken" and "unreadable" in entry.problem


def test_rename_moves_the_bundle_and_its_run_folder_and_refuses_bad_names(made, library):
    install(made, library, "old")
    run_folder(library, "old").mkdir(parents=True)
    new = rename_adapter(library, "old", "new name")
    assert new == library / "new name" and (new / "aura_config.json").is_file() and not (library / "old").exists()
    assert run_folder(library, "new name").is_dir()
    install(made, library, "other")
    for bad, why in (("../escape", "cannot be an adapter name"), ("a/b", "cannot be an adapter name"),
                     (".hidden", "cannot be an adapter name"), ("", "needs a name"), ("other", "exists already")):
        with pytest.raises(AuraError, match=why):
            rename_adapter(library, "new name", bad)
    assert sorted(p.name for p in library.iterdir() if not p.name.startswith(".")) == ["new name", "other"]


def test_delete_removes_the_bundle_and_its_checkpoints_and_nothing_else(made, library, tmp_path):
    install(made, library, "gone")
    install(made, library, "kept")
    run_folder(library, "gone").mkdir(parents=True)
    delete_adapter(library, "gone")
    assert not (library / "gone").exists() and not run_folder(library, "gone").exists()
    assert (library / "kept" / "aura_config.json").is_file()
    outside = tmp_path / "outside"
    shutil.copytree(made["carried"], outside)
    os.symlink(outside, library / "link")
    with pytest.raises(AuraError):
        delete_adapter(library, "link")  # a link into the library is not an adapter of it
    with pytest.raises(AuraError):
        delete_adapter(library, "../outside")
    assert (outside / "aura_config.json").is_file()


def test_a_run_never_writes_over_a_folder_that_is_not_a_bundle(made, library):
    (library / "photos").mkdir()
    (library / "photos" / "cat.jpg").write_bytes(b"jpg")
    with pytest.raises(AuraError, match="not an adapter bundle"):
        output_folder(library, "photos")
    install(made, library, "mine")
    assert output_folder(library, "mine") == (library / "mine", True)  # a bundle may be replaced (the tab asks)
    assert output_folder(library, "fresh") == (library / "fresh", False)


# -- export and import ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_export_then_import_gives_the_same_loadable_bundle(made, library, tmp_path, suffix):
    source = install(made, library, "travel")
    archive = export_adapter(source, tmp_path / f"travel{suffix}")
    assert archive.is_file() and not list(tmp_path.glob("*.part"))
    other = tmp_path / "elsewhere" / "adapters"
    entry = import_archive(archive, other)
    assert isinstance(entry, AdapterEntry) and entry.name == "travel" and entry.path == other / "travel"
    assert snapshot(entry.path) == snapshot(source)
    for p in source.rglob("*"):
        if p.is_file():
            assert (entry.path / p.relative_to(source)).read_bytes() == p.read_bytes()
    again = import_archive(archive, other)  # a second import does not overwrite the first
    assert again.name == "travel-2"
    assert not [p for p in other.iterdir() if p.name.startswith(".import-")]
    load_bundle(entry.path, RuntimeConfig(device="cpu"))


def test_import_refuses_a_parent_path_member(made, library, tmp_path):
    archive = tar_with(tmp_path / "a.tar.gz", made["carried"], extra=[("../evil.txt", tarfile.REGTYPE, b"x", "")])
    refused(archive, library, "../evil.txt", "leads outside")


def test_import_refuses_an_absolute_path(made, library, tmp_path):
    archive = tar_with(tmp_path / "a.tar.gz", made["carried"],
                       extra=[(str(tmp_path / "evil.txt"), tarfile.REGTYPE, b"x", "")])
    refused(archive, library, "absolute path")


def test_import_refuses_a_symlink_and_a_hard_link(made, library, tmp_path):
    archive = tar_with(tmp_path / "s.tar.gz", made["carried"],
                       extra=[("b/evil_link", tarfile.SYMTYPE, b"", "/etc/passwd")])
    refused(archive, library, "b/evil_link", "symbolic")
    archive = tar_with(tmp_path / "h.tar.gz", made["carried"],
                       extra=[("b/evil_hard", tarfile.LNKTYPE, b"", "b/aura_config.json")])
    refused(archive, library, "b/evil_hard", "hard")


@pytest.mark.parametrize("name", ["b/pytorch_model.bin", "b/weights.pt", "b/base/model.pkl"])
def test_import_refuses_a_pickle_file(made, library, tmp_path, name):
    archive = tar_with(tmp_path / "p.tar.gz", made["carried"], extra=[(name, tarfile.REGTYPE, b"\x80\x04evil", "")])
    refused(archive, library, name, "pickled code", "safetensors")


def test_import_refuses_a_truncated_archive(made, library, tmp_path):
    whole = export_adapter(made["carried"], tmp_path / "whole.tar.gz")
    cut = tmp_path / "cut.tar.gz"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    refused(cut, library, "damaged or truncated")
    zipped = export_adapter(made["carried"], tmp_path / "whole.zip")
    cut_zip = tmp_path / "cut.zip"
    cut_zip.write_bytes(zipped.read_bytes()[: zipped.stat().st_size - 200])  # loses the central directory
    refused(cut_zip, library, "damaged or truncated")


def test_import_refuses_a_zip_with_a_parent_path_or_a_symlink(made, library, tmp_path):
    bad = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("b/aura_config.json", (made["carried"] / "aura_config.json").read_text())
        zf.writestr("../evil.txt", "x")
    refused(bad, library, "leads outside")
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as zf:
        zf.writestr("b/aura_config.json", (made["carried"] / "aura_config.json").read_text())
        info = zipfile.ZipInfo("b/evil_link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    refused(link, library, "symbolic link")


def test_import_refuses_a_bundle_whose_base_model_is_not_here(made, library, tmp_path):
    archive = export_adapter(made["lacking"], tmp_path / "lacking.tar.gz")
    message = refused(archive, library, "needs base model 'tiny-llama'", "not available here")
    print(message)


def test_import_refuses_a_bundle_made_for_another_base_model(made, library, tmp_path):
    other_base = save_tiny_base(tmp_path / "qwen-base", "qwen2", hidden=32, layers=2)
    bundle = tmp_path / "for-other"
    shutil.copytree(made["lacking"], bundle)
    meta = read_bundle_config(bundle)
    meta["base"]["id"] = str(other_base)  # the adapter says: my base is that folder; its config says otherwise
    (bundle / "aura_config.json").write_text(json.dumps(meta))
    archive = export_adapter(bundle, tmp_path / "for-other.tar.gz")
    refused(archive, library, "made for base model", "differs")


def test_import_refuses_what_is_not_one_bundle_or_is_too_big(made, library, tmp_path):
    notes = tmp_path / "notes.tar.gz"
    with tarfile.open(notes, "w:gz") as tf:
        info = tarfile.TarInfo("readme.txt")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"hi"))
    refused(notes, library, "holds no adapter bundle")
    not_archive = tmp_path / "plain.tar.gz"
    not_archive.write_bytes(b"this is not an archive at all")
    refused(not_archive, library, "not a readable tar or zip archive")
    archive = export_adapter(made["carried"], tmp_path / "big.tar.gz")
    before = snapshot(library)
    with pytest.raises(AuraError, match="more than the limit"):
        import_archive(archive, library, max_bytes=10_000)
    assert snapshot(library) == before


def test_import_refuses_an_unknown_file_type_and_a_broken_config(made, library, tmp_path):
    archive = tar_with(tmp_path / "exe.tar.gz", made["carried"], extra=[("b/run.sh", tarfile.REGTYPE, b"rm -rf", "")])
    refused(archive, library, "b/run.sh", "not a file an adapter bundle holds")
    broken = tmp_path / "broken"
    shutil.copytree(made["carried"], broken)
    (broken / "aura_config.json").write_text("{")
    refused(export_adapter(broken, tmp_path / "broken.tar.gz"), library, "unreadable")


def test_stale_import_folders_are_cleaned_up(library):
    stale = library / ".import-old"
    stale.mkdir()
    os.utime(stale, (0, 0))
    assert remove_stale_imports(library) == 1 and not stale.exists()


# -- the Adapters tab -------------------------------------------------------------------------------


@pytest.fixture
def tab(qtbot, library, made):
    jobs = Jobs()
    tab = LibraryTab(library, jobs, made["lacking"])
    qtbot.addWidget(tab)
    yield tab
    jobs.shutdown()


def listed(qtbot, tab, names):
    tab.refresh()
    qtbot.waitUntil(lambda: tab.names() == names, timeout=EVENT_TIMEOUT_MS)


pytestmark = pytest.mark.usefixtures("main_thread_gc")


def test_tab_lists_marks_the_active_adapter_and_asks_before_deleting(qtbot, tab, made, library):
    install(made, library, "alpha")
    tab.show()
    qtbot.waitUntil(lambda: tab.names() == ["default", "alpha"], timeout=EVENT_TIMEOUT_MS)
    assert tab.table.item(0, 6).text() == "✓"  # the bundled default is in use
    tab.set_active(str(library / "alpha"))
    assert [tab.table.item(i, 6).text() for i in range(2)] == ["", "✓"]
    tab.select("default")
    assert not tab.buttons["delete"].isEnabled() and not tab.buttons["rename"].isEnabled()
    tab.select("alpha")
    with qtbot.waitSignal(tab.activate_requested) as used:
        tab.buttons["use"].click()
    assert used.args == [str(library / "alpha")]
    tab.buttons["delete"].click()
    box = tab.last_dialog
    assert isinstance(box, QMessageBox) and "alpha" in box.text() and box.isVisible()
    box.button(QMessageBox.StandardButton.Cancel).click()
    qtbot.wait(100)
    assert (library / "alpha").is_dir()  # cancelled: nothing deleted
    tab.select("alpha")
    tab.buttons["delete"].click()
    with qtbot.waitSignal(tab.deleted, timeout=EVENT_TIMEOUT_MS) as gone:
        tab.last_dialog.button(QMessageBox.StandardButton.Yes).click()
    assert gone.args == [str(library / "alpha")] and not (library / "alpha").exists()
    qtbot.waitUntil(lambda: tab.names() == ["default"], timeout=EVENT_TIMEOUT_MS)


def test_tab_renames_exports_and_imports_and_shows_a_refusal(qtbot, tab, made, library, tmp_path):
    install(made, library, "beta")
    listed(qtbot, tab, ["default", "beta"])
    with qtbot.waitSignal(tab.renamed) as renamed:
        tab.rename(tab.entry("beta"), "gamma")
    assert renamed.args == [str(library / "beta"), str(library / "gamma")]
    listed(qtbot, tab, ["default", "gamma"])
    tab.export_to(tab.entry("gamma"), tmp_path / "gamma.tar.gz")
    qtbot.waitUntil(lambda: "Exported" in tab.message.text(), timeout=EVENT_TIMEOUT_MS)
    tab.import_from(tmp_path / "gamma.tar.gz")
    qtbot.waitUntil(lambda: tab.names() == ["default", "gamma", "gamma-2"], timeout=EVENT_TIMEOUT_MS)
    evil = tar_with(tmp_path / "evil.tar.gz", made["carried"], extra=[("../evil.txt", tarfile.REGTYPE, b"x", "")])
    before = snapshot(library)
    tab.import_from(evil)
    qtbot.waitUntil(lambda: isinstance(tab.last_dialog, QMessageBox) and tab.last_dialog.isVisible(),
                    timeout=EVENT_TIMEOUT_MS)
    assert tab.last_dialog.objectName() == "ImportRefusedDialog"
    assert "../evil.txt" in tab.last_dialog.informativeText() and "Not imported" in tab.message.text()
    assert snapshot(library) == before
