"""Data versioning with DVC: `data.dvc` tracks `data/`, a remote keeps every version.

The version of the data is the git commit of `data.dvc` (the pointer file holding the
data folder's hash); the pipeline takes that revision and reads the data back from the
remote (`materialize_data`), so a run can always be repeated on the same clips, even
after the workspace copy is gone. The fetch step first resolves the revision it was given
(`resolve_data_lineage`: HEAD or a tag -> the full commit, and data.dvc's hash at that
commit), reads the data at that commit, and leaves the record in the fetched folder
(`write_lineage`), where the register step finds which data the run trained on.

DVC runs as its CLI in a subprocess of this interpreter (`python -m dvc`): the CLI is
DVC's documented, stable surface, its errors arrive as one readable line, and nothing
of DVC's global state (locks, loggers, thread pools) stays in the calling process.
Telemetry and update checks are off; DVC's per-repo state ("site cache") lives in the
project's git-ignored `.dvc/tmp`, not in a machine-wide `/var/tmp/dvc`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel

from asdflow.config import DataVersionConfig
from asdflow.errors import DataError, one_line

WORKSPACE = "workspace"  # the revision name of data not (yet) committed to git
DVC_SETUP_FILES = (".dvc/config", ".dvc/.gitignore", ".dvcignore")
REMOTE_URL_ENV = "DVC_REMOTE_URL"  # overrides the object store's URL (the cluster Secret's key)
DEFAULT_TIMEOUT_S = 3600.0


class DataVersion(BaseModel):
    """One version of the dataset: what `asdflow data version` prints and MLflow records."""

    rev: str  # the git commit of the pointer file, or "workspace" when not committed
    md5: str  # DVC's hash of the whole data folder, as data.dvc writes it ("<md5>.dir"; the MLflow tag too)
    path: str  # the data folder, relative to the project
    remote: str  # the DVC remote holding it
    remote_url: str
    n_files: int
    size: int  # bytes

    @property
    def committed(self) -> bool:
        return self.rev != WORKSPACE


# ---------------------------------------------------------------- subprocesses


def _is_local(project: str | Path) -> bool:
    return "://" not in str(project) and not str(project).startswith("git@")


def _env(project: str | Path) -> dict[str, str]:
    env = dict(os.environ)
    env["DVC_NO_ANALYTICS"] = "1"
    env["GIT_TERMINAL_PROMPT"] = "0"  # a private git URL fails instead of waiting for a password
    if _is_local(project):
        site_cache = Path(project).resolve() / ".dvc" / "tmp" / "site-cache"
    else:
        site_cache = Path(tempfile.gettempdir()) / "asdflow-dvc-site-cache"
    env.setdefault("DVC_SITE_CACHE_DIR", str(site_cache))
    return env


def _dvc_message(output: str) -> str:
    """DVC's own error lines, without its advertising footer."""
    lines = [line.strip() for line in output.splitlines() if "dvc.org/support" not in line]
    errors = [line.removeprefix("ERROR:").strip() for line in lines if line.startswith("ERROR:")]
    text = "; ".join(errors) if errors else " ".join(line for line in lines if line)[-500:]
    return text.replace("unexpected error - ", "") or "no message"


def _dvc(
    project: Path,
    *args: str,
    what: str,
    timeout: float = DEFAULT_TIMEOUT_S,
    env_project: str | Path | None = None,
) -> str:
    command = [sys.executable, "-m", "dvc", *args]
    try:
        done = subprocess.run(
            command,
            cwd=project,
            env=_env(env_project if env_project is not None else project),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise DataError(f"{what}: `dvc {' '.join(args)}` did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        raise DataError(f"{what}: {_dvc_message(done.stderr + done.stdout)}")
    return done.stdout


def _git(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, env=_env(project))
    if check and done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise DataError(f"git {' '.join(args)} in {project}: {reason[-1] if reason else 'failed'}")
    return done


def _git_root(project: Path) -> Path | None:
    if shutil.which("git") is None:
        return None
    done = _git(project, "rev-parse", "--show-toplevel", check=False)
    return Path(done.stdout.strip()).resolve() if done.returncode == 0 else None


def _changed(project: Path, path: str) -> bool:
    """Untracked or different from HEAD (staged or not)."""
    return bool(_git(project, "status", "--porcelain", "--untracked-files=all", "--", path).stdout.strip())


# ---------------------------------------------------------------- DVC config


def _config(config: DataVersionConfig | None) -> DataVersionConfig:
    return config if config is not None else DataVersionConfig()


def _read_dvc_config(project: Path) -> dict:
    """.dvc/config overlaid with the machine-local .dvc/config.local (what DVC itself reads)."""
    from configobj import ConfigObj, ConfigObjError  # a dependency of dvc

    merged: dict = {}
    for name in ("config", "config.local"):
        path = project / ".dvc" / name
        if not path.exists():
            continue
        try:
            parsed = ConfigObj(str(path), encoding="utf-8").dict()
        except ConfigObjError as err:
            raise DataError(f"{path}: malformed DVC config ({err})") from None
        for section, values in parsed.items():
            if isinstance(values, dict):
                merged.setdefault(section, {}).update(values)
    return merged


def _remote_settings(project: str | Path, name: str, config: DataVersionConfig) -> dict[str, str]:
    """The remote's settings as DVC would use them, with local paths made absolute."""
    if _is_local(project) and (Path(project) / ".dvc").is_dir():
        dvc_config = _read_dvc_config(Path(project))
        settings = dict(dvc_config.get(f'remote "{name}"', {}))
        if not settings:
            known = sorted(s.split('"')[1] for s in dvc_config if s.startswith('remote "'))
            raise DataError(
                f"DVC remote {name!r} is not configured in {Path(project) / '.dvc' / 'config'} "
                f"(configured: {', '.join(known) or 'none'}); run ensure_dvc_repo or `dvc remote add`"
            )
    elif name == config.local_remote:
        settings = {"url": config.local_remote_url}
    elif name == config.object_store_remote:
        settings = {"url": config.object_store_url}
    else:
        raise DataError(f"DVC remote {name!r} is not in the asdflow config (data.local_remote / object_store_remote)")
    if name == config.object_store_remote and os.environ.get(REMOTE_URL_ENV):
        settings["url"] = os.environ[REMOTE_URL_ENV]
    url = settings.get("url", "")
    if url and "://" not in url:
        # DVC reads a relative local path from .dvc/; a copied config must not move it.
        url = os.path.expanduser(url)
        if not os.path.isabs(url) and _is_local(project):
            url = str((Path(project) / ".dvc" / url).resolve())
        settings["url"] = url
    return settings


def _write_remote_config(path: Path, name: str, settings: dict[str, str]) -> Path:
    from configobj import ConfigObj

    out = ConfigObj(encoding="utf-8")
    out.filename = str(path)
    out["core"] = {"remote": name, "analytics": "false", "check_update": "false"}
    out[f'remote "{name}"'] = settings
    out.write()
    return path


def _require_dvc_repo(project: Path) -> None:
    if not project.is_dir():
        raise DataError(f"project folder not found: {project}")
    if not (project / ".dvc").is_dir():
        raise DataError(f"{project} is not a DVC repository (no .dvc/): run ensure_dvc_repo first")


# ---------------------------------------------------------------- the pointer file


def _pointer(data_dir: str) -> str:
    return f"{data_dir.rstrip('/')}.dvc"


def _parse_pointer(text: str, source: str) -> tuple[str, int, int]:
    """(out md5 as DVC wrote it, number of files, size) from a .dvc file's text."""
    try:
        outs = (yaml.safe_load(text) or {}).get("outs") or []
        out = outs[0]
        return str(out["md5"]), int(out.get("nfiles", 1)), int(out.get("size", 0))
    except (yaml.YAMLError, AttributeError, IndexError, KeyError, TypeError, ValueError):
        raise DataError(f"{source}: not a DVC pointer file with an output md5") from None


def _revision_of_pointer(project: Path, pointer: str) -> str:
    """The last commit that changed the pointer, or "workspace" if the file differs from HEAD."""
    if _git_root(project) is None or _changed(project, pointer):
        return WORKSPACE
    rev = _git(project, "log", "-1", "--format=%H", "--", pointer).stdout.strip()
    return rev or WORKSPACE


def _commit_of(repo: Path, rev: str, where: str) -> str:
    """The full sha of the commit `rev` (HEAD, a branch, a tag, a short sha) names in `repo`."""
    resolved = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    if resolved.returncode != 0:
        raise DataError(f"unknown git revision {rev!r} in {where}")
    return resolved.stdout.strip()


def _pointer_at(repo: Path, commit: str, pointer: str, where: str) -> tuple[str, int, int]:
    """(md5, number of files, size) of the pointer file as committed at `commit`, not as in the working copy."""
    shown = _git(repo, "show", f"{commit}:{pointer}", check=False)  # "./data.dvc": relative to a subdir project
    name = pointer.removeprefix("./")
    if shown.returncode != 0:
        raise DataError(f"revision {commit} of {where} has no {name}: the data was not versioned there")
    return _parse_pointer(shown.stdout, f"{name} at {commit}")


# ---------------------------------------------------------------- public API


def ensure_dvc_repo(project_dir: str | Path, config: DataVersionConfig | None = None) -> None:
    """Make `project_dir` a DVC repository with the configured remotes; running it again changes nothing.

    `dvc init` (with `--no-scm` outside git, `--subdir` below a git root) when `.dvc/` is
    missing; then adds each configured remote that is missing (the local-directory
    one and the object store), makes `config.remote` the default if none is, and
    switches off DVC's analytics and update check in the repo config. Existing remote
    URLs are left as they are: the repo's `.dvc/config` wins over the defaults.
    """
    cfg = _config(config)
    project = Path(project_dir).resolve()
    if not project.is_dir():
        raise DataError(f"project folder not found: {project}")
    if not (project / ".dvc").is_dir():
        git_root = _git_root(project)
        args = ["init"]
        if git_root is None:
            args.append("--no-scm")
        elif git_root != project:
            args.append("--subdir")
        _dvc(project, *args, what=f"dvc init in {project}")
    _complete_dvc_config(project, cfg)


def _complete_dvc_config(project: Path, cfg: DataVersionConfig) -> None:
    """Add what is missing to .dvc/config in one write.

    One write instead of a `dvc remote add` / `dvc config` per setting (each a ~0.7 s
    interpreter start); DVC's config format is configobj's, which DVC itself writes with.
    """
    from configobj import ConfigObj

    path = project / ".dvc" / "config"
    repo_config = ConfigObj(str(path), encoding="utf-8")
    changed = False
    wanted = {cfg.local_remote: cfg.local_remote_url, cfg.object_store_remote: cfg.object_store_url}
    for name, url in wanted.items():
        if f'remote "{name}"' not in repo_config:
            repo_config[f'remote "{name}"'] = {"url": url}
            changed = True
    core = repo_config.setdefault("core", {})
    if not core.get("remote"):
        core["remote"] = cfg.remote
        changed = True
    for key in ("analytics", "check_update"):
        if str(core.get(key, "")).lower() != "false":
            core[key] = "false"  # no usage reports, no update check (the machine may have no network)
            changed = True
    if changed:
        repo_config.write()  # DVC checks the values when it next loads the repo (dvc add / push / get)


def version_data(
    project_dir: str | Path,
    data_dir: str | None = None,
    message: str | None = None,
    commit: bool = False,
    config: DataVersionConfig | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> DataVersion:
    """`dvc add` the data folder, `dvc push` it to the remote, and (if asked) commit the pointer to git.

    The push comes before the commit, so no commit ever names data the remote lacks.
    With `commit=True` the commit holds only the pointer file, the `.gitignore` entry
    DVC added for the data (if any) and DVC's own setup files when they are new or
    changed; its subject is `data: <md5>` and `message` becomes its body. Committing
    the same data twice makes no new commit: the revision is the earlier one.
    """
    cfg = _config(config)
    project = Path(project_dir).resolve()
    data_dir = Path(data_dir or cfg.data_dir).as_posix()
    _require_dvc_repo(project)
    data = project / data_dir
    if not data.is_dir():
        raise DataError(f"data folder not found: {data}")
    if not any(p.is_file() for p in data.rglob("*")):
        raise DataError(f"data folder {data} holds no files: nothing to version")
    git_root = _git_root(project)
    if commit and git_root is None:
        raise DataError(f"cannot commit the data version: {project} is not in a git repository")
    pointer = _pointer(data_dir)
    gitignore = data.parent / ".gitignore"
    ignore_before = gitignore.read_bytes() if gitignore.exists() else None

    settings = _remote_settings(project, cfg.remote, cfg)  # a remote that is not configured fails before any work
    _dvc(project, "add", data_dir, what=f"dvc add {data_dir} in {project}", timeout=timeout)
    md5, n_files, size = _parse_pointer((project / pointer).read_text(), str(project / pointer))
    if cfg.remote == cfg.object_store_remote and os.environ.get(REMOTE_URL_ENV):
        # `dvc push` takes no config file; the machine-local config (git-ignored) carries the override.
        _dvc(project, "remote", "modify", "--local", cfg.remote, "url", settings["url"],
             what=f"pointing remote {cfg.remote!r} at ${REMOTE_URL_ENV}")
    _dvc(
        project, "push", "-r", cfg.remote, pointer,
        what=f"pushing {data_dir} ({md5}) to DVC remote {cfg.remote!r} ({settings.get('url', '?')})",
        timeout=timeout,
    )

    if commit and _changed(project, pointer):
        paths = [pointer]
        ignore_after = gitignore.read_bytes() if gitignore.exists() else None
        if ignore_after != ignore_before:
            paths.append(os.path.relpath(gitignore, project))
        paths += [p for p in DVC_SETUP_FILES if (project / p).exists() and _changed(project, p)]
        _git(project, "add", "--", *paths)
        body = ["-m", message] if message else []
        _git(project, "commit", "-q", "-m", f"data: {md5}", *body, "--", *paths)
    return DataVersion(
        rev=_revision_of_pointer(project, pointer) if git_root else WORKSPACE,
        md5=md5,
        path=data_dir,
        remote=cfg.remote,
        remote_url=settings.get("url", ""),
        n_files=n_files,
        size=size,
    )


def current_data_version(project_dir: str | Path, config: DataVersionConfig | None = None) -> DataVersion:
    """The data version the pipeline uses by default: the last commit of the pointer file
    ("workspace" when it has uncommitted changes or there is no git) and the data hash it holds."""
    cfg = _config(config)
    project = Path(project_dir).resolve()
    _require_dvc_repo(project)
    pointer = _pointer(cfg.data_dir)
    if not (project / pointer).exists():
        raise DataError(f"no {pointer} in {project}: the data is not versioned yet (run `asdflow demo`, or `dvc add data` and commit data.dvc)")
    md5, n_files, size = _parse_pointer((project / pointer).read_text(), str(project / pointer))
    settings = _remote_settings(project, cfg.remote, cfg)
    return DataVersion(
        rev=_revision_of_pointer(project, pointer),
        md5=md5,
        path=cfg.data_dir,
        remote=cfg.remote,
        remote_url=settings.get("url", ""),
        n_files=n_files,
        size=size,
    )


def _empty_destination(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DataError(f"destination {dest} exists and is not an empty folder: data is never written over")


def materialize_data(
    project_dir: str | Path,
    rev: str,
    dest: str | Path,
    config: DataVersionConfig | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """Write the data folder as it was at git revision `rev` into `dest` (a new or empty folder).

    The files come from the project's DVC cache or, failing that, from `config.remote`
    (its settings as configured now, so data committed before a remote moved stays
    readable). `rev="workspace"` copies the current data folder instead. `project_dir`
    may also be a git URL (a cluster step without a checkout); then the remote's URL
    comes from the config. Returns `dest`.
    """
    cfg = _config(config)
    dest = Path(dest).resolve()
    _empty_destination(dest)
    local = _is_local(project_dir)
    project = Path(project_dir).resolve() if local else None

    if rev == WORKSPACE:
        if project is None:
            raise DataError(f"revision 'workspace' needs a local project folder, not {project_dir}")
        source = project / cfg.data_dir
        if not source.is_dir():
            raise DataError(f"data folder not found: {source} (revision 'workspace')")
        shutil.copytree(source, dest, dirs_exist_ok=True)
        return dest

    pointer = _pointer(cfg.data_dir)
    settings = _remote_settings(project if project else str(project_dir), cfg.remote, cfg)
    where = f"DVC remote {cfg.remote!r} ({settings.get('url', '?')})"
    expected_files = None
    if project is not None:
        _require_dvc_repo(project)
        if _git_root(project) is None:
            raise DataError(f"revision {rev!r}: {project} is not a git repository (only 'workspace' exists)")
        rev = _commit_of(project, rev, str(project))
        _md5, expected_files, _size = _pointer_at(project, rev, f"./{pointer}", str(project))

    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        remote_config = _write_remote_config(staging / "remote.config", cfg.remote, settings)
        fetched = staging / "data"
        try:
            _dvc(
                staging,
                "get", str(project or project_dir), cfg.data_dir, "--rev", rev, "-o", str(fetched),
                "--config", str(remote_config),
                what=f"reading {cfg.data_dir} at revision {rev} from {where}",
                timeout=timeout,
                env_project=project or str(project_dir),
            )
        except DataError as err:
            if "No storage files" in str(err) or "failed to load directory" in str(err):
                raise DataError(f"{err} (neither the DVC cache nor the remote holds this version: "
                                "was it pushed, e.g. by version_data, to this remote?)") from None
            raise
        got = sum(1 for p in fetched.rglob("*") if p.is_file()) if fetched.is_dir() else 0
        if expected_files is not None and got != expected_files:
            raise DataError(
                f"reading {cfg.data_dir} at revision {rev} from {where}: "
                f"got {got} files, {pointer} lists {expected_files}"
            )
        if dest.exists():
            dest.rmdir()  # empty (checked above); replaced whole so a failure never leaves half the data
        os.replace(fetched, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


# ---------------------------------------------------------------- lineage

LINEAGE_FILE = ".asdflow-lineage.json"  # a dot file: the DCASE reader and validation never take it for data


class DataLineage(BaseModel):
    """Which data a run read: the revision it was asked for, the commit that revision named when
    the data was fetched, and the data hash data.dvc held at that commit."""

    requested: str  # as given: HEAD, a branch, a tag, a short sha, or "workspace"
    commit: str  # the full sha whose data.dvc was read, or "workspace" (the folder as it was on disk)
    data_hash: str | None = None  # outs[0].md5 of data.dvc ("<md5>.dir") at `commit`; None: no pointer to read
    data_hash_source: Literal["dvc@commit", "dvc-workspace"] | None = None  # the working data.dvc may lag the folder
    base_commit: str | None = None  # workspace data only: the project's HEAD then (None outside git)
    project: str  # the checkout or git URL it came from

    @property
    def committed(self) -> bool:
        return self.commit != WORKSPACE

    @classmethod
    def from_json(cls, text: str, source: str) -> DataLineage:
        try:
            return cls.model_validate_json(text)
        except ValueError as err:  # pydantic's ValidationError is a ValueError
            raise DataError(f"{source}: not a data lineage record ({one_line(err)})") from None


def _workspace_lineage(project_dir: str | Path, requested: str, cfg: DataVersionConfig) -> DataLineage:
    if not _is_local(project_dir):
        raise DataError(f"revision 'workspace' needs a local project folder, not {project_dir}")
    project = Path(project_dir).resolve()
    if not project.is_dir():
        raise DataError(f"project folder not found: {project} (revision 'workspace')")
    pointer = project / _pointer(cfg.data_dir)
    md5 = _parse_pointer(pointer.read_text(), str(pointer))[0] if pointer.exists() else None
    return DataLineage(
        requested=requested, commit=WORKSPACE, data_hash=md5, data_hash_source="dvc-workspace" if md5 else None,
        base_commit=_head_commit(project), project=str(project),
    )


def _head_commit(project: Path) -> str | None:
    """HEAD's full sha, or None outside git or before the first commit."""
    if _git_root(project) is None:
        return None
    head = _git(project, "rev-parse", "--verify", "--quiet", "HEAD", check=False)
    if head.returncode != 0:
        return None
    return head.stdout.strip() or None


def _committed_lineage(repo: Path, requested: str, pointer: str, where: str) -> DataLineage:
    commit = _commit_of(repo, requested, where)
    md5, _n_files, _size = _pointer_at(repo, commit, pointer, where)
    return DataLineage(requested=requested, commit=commit, data_hash=md5, data_hash_source="dvc@commit", project=where)


def resolve_data_lineage(
    project_dir: str | Path, rev: str, config: DataVersionConfig | None = None, timeout: float = DEFAULT_TIMEOUT_S
) -> DataLineage:
    """The commit `rev` names now and the data hash its data.dvc holds, for a checkout or a git URL.

    Resolve first, then fetch at `lineage.commit` (not `rev`): a branch that moves meanwhile cannot
    make the data read differ from the commit recorded. A git URL is read through a bare clone (the
    code repository; the data stays in DVC). `rev="workspace"`: the folder as it is, recorded as
    such, with the working data.dvc's hash (if any) and HEAD as `base_commit`.
    """
    cfg = _config(config)
    if rev == WORKSPACE:
        return _workspace_lineage(project_dir, rev, cfg)
    pointer = _pointer(cfg.data_dir)
    if _is_local(project_dir):
        project = Path(project_dir).resolve()
        _require_dvc_repo(project)
        if _git_root(project) is None:
            raise DataError(f"revision {rev!r}: {project} is not a git repository (only 'workspace' exists)")
        return _committed_lineage(project, rev, f"./{pointer}", str(project))
    with tempfile.TemporaryDirectory(prefix="asdflow-lineage-") as tmp:
        clone = _bare_clone(str(project_dir), Path(tmp) / "repo.git", rev, timeout)
        return _committed_lineage(clone, rev, pointer, str(project_dir))


def _bare_clone(url: str, into: Path, rev: str, timeout: float) -> Path:
    """A bare clone of the code repository at `url`, without file contents until asked (data.dvc's only)."""
    what = f"cannot read revision {rev!r} of {url}"
    try:
        done = subprocess.run(
            ["git", "clone", "--quiet", "--bare", "--filter=blob:none", url, str(into)],
            capture_output=True, text=True, timeout=timeout, env=_env(url),
        )
    except subprocess.TimeoutExpired:
        raise DataError(f"{what}: git clone took over {timeout:.0f} s") from None
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise DataError(f"{what}: {reason[-1] if reason else 'git clone failed'}")
    return into


def write_lineage(folder: str | Path, lineage: DataLineage) -> Path:
    """Record `lineage` in the fetched data folder, where any step that holds the data (or a manifest
    whose root is that folder) finds it."""
    path = Path(folder) / LINEAGE_FILE
    path.write_text(lineage.model_dump_json(indent=2) + "\n")
    return path


def carry_lineage(source: str | Path, target: str | Path) -> Path | None:
    """Copy the lineage record of `source` (a fetched folder, or a manifest folder that carries one) into
    `target`: the validated manifest and the separated clips travel with the record of which data they
    come from, so a step that receives only them (register) can tell."""
    lineage = read_lineage(source)
    return write_lineage(target, lineage) if lineage is not None else None


def read_lineage(folder: str | Path) -> DataLineage | None:
    """The lineage `write_lineage` left in `folder`, or None when there is none (data not fetched by asdflow)."""
    path = Path(folder) / LINEAGE_FILE
    if not path.is_file():
        return None
    return DataLineage.from_json(path.read_text(), str(path))
