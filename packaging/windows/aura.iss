; Inno Setup 6 script: the Windows installer for the one-folder build in dist\aura.
; NOT built or tried: there is no Windows machine in this project's CI (packaging/README.md, "Windows").
;
;   .venv\Scripts\python -m PyInstaller --noconfirm --distpath dist --workpath build\pyinstaller packaging\aura.spec
;   dist\aura\aura.exe --self-test
;   "%ProgramFiles(x86)%\Inno Setup 6\ISCC.exe" /DAppVersion=0.1.0 packaging\windows\aura.iss
;   -> dist\aura-0.1.0-windows-x64-setup.exe; after installing: aura --self-test (new terminal, PATH task on)
;
; It installs per user by default (no administrator rights; the setup offers all users), puts AuRA in the
; Start menu, optionally on the desktop and the console command `aura` on the PATH, and runs nothing at install.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define Root "..\.."

[Setup]
AppId={{4F6A2C1E-8B7D-4E3A-9C5B-3D2A1F0E9C87}
AppName=AuRA
AppVersion={#AppVersion}
AppPublisher=AuRA developers
DefaultDirName={autopf}\AuRA
DefaultGroupName=AuRA
DisableProgramGroupPage=yes
OutputDir={#Root}\dist
OutputBaseFilename=aura-{#AppVersion}-windows-x64-setup
; the icon aura.spec drew for the executables (PyInstaller's work folder)
SetupIconFile={#Root}\build\pyinstaller\aura\aura.ico
UninstallDisplayIcon={app}\aura-gui.exe
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ChangesEnvironment=yes
WizardStyle=modern
; about 1 GB of files, mostly torch: solid LZMA2 at its default level takes many minutes and saves little
Compression=lzma2/fast
SolidCompression=no

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "addtopath"; Description: "Add the aura command to PATH"; Flags: unchecked

[Files]
Source: "{#Root}\dist\aura\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\AuRA"; Filename: "{app}\aura-gui.exe"
Name: "{autodesktop}\AuRA"; Filename: "{app}\aura-gui.exe"; Tasks: desktopicon

[Registry]
Root: HKA; Subkey: "{code:EnvironmentKey}"; ValueType: expandsz; ValueName: "Path"; ValueData: "{olddata};{app}"; \
    Tasks: addtopath; Check: NotOnPath(ExpandConstant('{app}'))

[Run]
Filename: "{app}\aura-gui.exe"; Description: "{cm:LaunchProgram,AuRA}"; Flags: nowait postinstall skipifsilent

[Code]
function EnvironmentKey(Param: string): string;
begin
  if IsAdminInstallMode then
    Result := 'SYSTEM\CurrentControlSet\Control\Session Manager\Environment'
  else
    Result := 'Environment';
end;

function NotOnPath(Dir: string): Boolean;
var
  Path: string;
begin
  if not RegQueryStringValue(HKA, EnvironmentKey(''), 'Path', Path) then
    Result := True
  else
    Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Path) + ';') = 0;
end;
