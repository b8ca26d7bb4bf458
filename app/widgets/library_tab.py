"""LibraryTab: the installed adapters — the bundled default and the user's library — and what to do with them.

Each row: name, base LLM, teacher, date, key metrics, size, and whether the Chat tab uses it.
**Use** makes it the active adapter (the window reloads the model), **Rename…** and **Delete…**
(asked first) act on the library's own adapters, **Export…** writes one archive, **Import…**
checks an archive and adds it (``app.library``: nothing is written when it is refused). Listing,
import, export and delete run as background jobs; their results come back here.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QAbstractItemView, QFileDialog, QHBoxLayout, QHeaderView, QInputDialog, QLabel,
                               QMessageBox, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from app.library import AdapterEntry, delete_adapter, export_adapter, import_archive, list_adapters, rename_adapter
from app.workers.jobs import JobResult, Jobs
from aura_model.errors import AuraError

from .status_bar import human_bytes
from .theme import ERROR, OK

COLUMNS = ("Name", "Base LLM", "Teacher", "Date", "Key metrics", "Size", "In use")
METRIC_SHORT = {"val_cosine": "cosine", "val_token_accuracy": "token acc.", "val_agreement": "agreement"}
ARCHIVES = "Adapter archives (*.tar.gz *.tgz *.tar *.zip);;All files (*)"


def metrics_text(metrics: dict[str, float]) -> str:
    return " · ".join(f"{label} {metrics[k]:.2f}" for k, label in METRIC_SHORT.items() if k in metrics) or "–"


class LibraryTab(QWidget):
    activate_requested = Signal(str)  # a bundle folder the user wants to talk to (the window loads it)
    renamed = Signal(str, str)  # (old bundle folder, new bundle folder)
    deleted = Signal(str)  # the bundle folder that was deleted

    def __init__(self, library: Path, jobs: Jobs, default_bundle: Path | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("LibraryTab")
        self.library, self.jobs, self.default_bundle = Path(library), jobs, default_bundle
        self.entries: list[AdapterEntry] = []
        self.active = ""  # the active bundle folder ("" = the bundled default)
        self.last_dialog: QMessageBox | QInputDialog | None = None  # the latest question or error shown (tests)
        self.loaded = False  # the first listing arrived
        self._build()
        self._select_changed()

    def _build(self) -> None:
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._select_changed)
        self.table.itemDoubleClicked.connect(lambda _item: self.use_selected())
        self.buttons = {}
        row = QHBoxLayout()
        for key, label, slot in (("use", "Use", self.use_selected), ("rename", "Rename…", self.rename_selected),
                                 ("delete", "Delete…", self.delete_selected), ("export", "Export…", self.export_selected),
                                 ("import", "Import…", self.import_dialog), ("refresh", "Refresh", self.refresh)):
            button = QPushButton(label)
            button.clicked.connect(slot)
            self.buttons[key] = button
            row.addWidget(button)
        row.addStretch(1)
        self.message = QLabel(f"Adapters live in {self.library}")
        self.message.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.table, 1)
        layout.addLayout(row)
        layout.addWidget(self.message)

    # -- the list -------------------------------------------------------------------------------

    def showEvent(self, event) -> None:
        if not self.loaded:
            self.refresh()  # first listed when first shown, not while the window starts
        super().showEvent(event)

    def refresh(self) -> None:
        self.jobs.run(list_adapters, self.library, self.default_bundle, done=self._listed)

    def _listed(self, result: JobResult) -> None:
        if not result.ok:
            self.say(f"Cannot list the adapters: {result.error}", error=True)
            return
        selected = self.selected()
        self.entries = result.value
        self.table.setRowCount(len(self.entries))
        for i, e in enumerate(self.entries):
            self._fill_row(i, e)
            if selected is not None and e.path == selected.path:
                self.table.selectRow(i)
        self.loaded = True
        self._select_changed()

    def _fill_row(self, i: int, e: AdapterEntry) -> None:
        date = datetime.datetime.fromtimestamp(e.created).strftime("%Y-%m-%d %H:%M") if e.created else "–"
        base = e.base or (f"unreadable: {e.problem}" if e.problem else "–")
        cells = (e.name + (" (bundled)" if e.builtin else ""), base, e.teacher or "–", date, metrics_text(e.metrics),
                 human_bytes(e.size_bytes), "✓" if self.is_active(e) else "")
        for j, text in enumerate(cells):
            item = QTableWidgetItem(text)
            item.setToolTip(str(e.path) if j == 0 else text)
            self.table.setItem(i, j, item)

    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def entry(self, name: str) -> AdapterEntry | None:
        return next((e for e in self.entries if e.name == name), None)

    def select(self, name: str) -> None:
        for i, e in enumerate(self.entries):
            if e.name == name:
                self.table.selectRow(i)

    def selected(self) -> AdapterEntry | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        return self.entries[rows[0].row()] if rows and rows[0].row() < len(self.entries) else None

    def _select_changed(self) -> None:
        e = self.selected()
        for key in ("use", "export"):
            self.buttons[key].setEnabled(e is not None and not e.problem)
        for key in ("rename", "delete"):
            self.buttons[key].setEnabled(e is not None and not e.builtin)

    # -- the active adapter ---------------------------------------------------------------------

    def set_active(self, bundle: str) -> None:
        """The bundle the Chat tab uses ("" = the bundled default); its row gets the check mark."""
        self.active = bundle
        for i, e in enumerate(self.entries):
            self.table.item(i, len(COLUMNS) - 1).setText("✓" if self.is_active(e) else "")

    def is_active(self, e: AdapterEntry) -> bool:
        if not self.active:
            return e.builtin
        return Path(self.active).resolve() == e.path.resolve()

    def use_selected(self) -> None:
        e = self.selected()
        if e is not None and not e.problem:
            self.activate_requested.emit("" if e.builtin else str(e.path))

    # -- rename, delete -------------------------------------------------------------------------

    def rename_selected(self) -> None:
        e = self.selected()
        if e is None or e.builtin:
            return
        dialog = QInputDialog(self)
        dialog.setWindowTitle("Rename the adapter")
        dialog.setLabelText(f"New name for “{e.name}”:")
        dialog.setTextValue(e.name)
        dialog.textValueSelected.connect(lambda text: self.rename(e, text))
        dialog.open()
        self.last_dialog = dialog

    def rename(self, e: AdapterEntry, new_name: str) -> None:
        try:
            new = rename_adapter(self.library, e.name, new_name)
        except (AuraError, OSError) as exc:
            self.say(f"Cannot rename “{e.name}”: {exc}", error=True)
            return
        self.say(f"Renamed “{e.name}” to “{new.name}”.")
        self.renamed.emit(str(e.path), str(new))
        self.refresh()

    def delete_selected(self) -> None:
        e = self.selected()
        if e is None or e.builtin:
            return
        box = QMessageBox(QMessageBox.Icon.Warning, "Delete the adapter?",
                          f"Delete the adapter “{e.name}” ({human_bytes(e.size_bytes)}) and its checkpoints?",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, self)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.setObjectName("DeleteAdapterDialog")
        box.accepted.connect(lambda: self.delete(e))
        box.open()
        self.last_dialog = box

    def delete(self, e: AdapterEntry) -> None:
        self.jobs.run(delete_adapter, self.library, e.name, done=lambda result: self._deleted(e, result))

    def _deleted(self, e: AdapterEntry, result: JobResult) -> None:
        if not result.ok:
            self.say(f"Cannot delete “{e.name}”: {result.error}", error=True)
        else:
            self.say(f"Deleted “{e.name}”.")
            self.deleted.emit(str(e.path))
        self.refresh()

    # -- export, import -------------------------------------------------------------------------

    def export_selected(self) -> None:
        e = self.selected()
        if e is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export the adapter", str(Path.home() / f"{e.name}.tar.gz"),
                                              ARCHIVES)
        if path:
            self.export_to(e, Path(path))

    def export_to(self, e: AdapterEntry, archive: Path) -> None:
        self.say(f"Exporting “{e.name}”…")
        self.jobs.run(export_adapter, e.path, archive, done=lambda result: self._exported(e, result))

    def _exported(self, e: AdapterEntry, result: JobResult) -> None:
        if result.ok:
            self.say(f"Exported “{e.name}” to {result.value}.")
        else:
            self.say(f"Cannot export “{e.name}”: {result.error}", error=True)

    def import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import an adapter archive", str(Path.home()), ARCHIVES)
        if path:
            self.import_from(Path(path))

    def import_from(self, archive: Path) -> None:
        """Check ``archive`` and add its adapter; a refusal is shown with its reason (nothing is written)."""
        self.say(f"Checking {archive.name}…")
        self.jobs.run(import_archive, archive, self.library, done=lambda result: self._imported(archive, result))

    def _imported(self, archive: Path, result: JobResult) -> None:
        if result.ok:
            self.say(f"Imported “{result.value.name}” from {archive.name}.")
            self.refresh()
            return
        self.say(f"Not imported: {result.error}", error=True)
        box = QMessageBox(QMessageBox.Icon.Warning, "Not imported", f"{archive.name} was not imported.",
                          QMessageBox.StandardButton.Ok, self)
        box.setObjectName("ImportRefusedDialog")
        box.setInformativeText(result.error or "")
        box.open()
        self.last_dialog = box

    def say(self, text: str, error: bool = False) -> None:
        self.message.setStyleSheet(f"color: {ERROR if error else OK};")
        self.message.setText(text)
