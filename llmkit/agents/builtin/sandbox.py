"""A sandboxed Python runner: model-written code in a subprocess that cannot reach much.

Layers, each covering what the one before misses:
1. A fresh interpreter in isolated mode (`-I`: no environment variables, no user site,
   no current directory on sys.path), in a new session, cwd = a scratch directory.
2. Resource limits set in the child before exec: CPU seconds, address space (memory),
   file size (stdout/stderr go to files, so output floods hit it too), open files,
   no core dumps, and no new processes (RLIMIT_NPROC; the kernel ignores it for root).
3. An audit hook (PEP 578) installed before the user's code runs: open() outside the
   scratch dir (read-only access to sys.prefix / sys.base_prefix excepted: imports need it),
   directory and file operations outside it, every socket operation, fork / exec /
   spawn / subprocess / os.system / kill raise PermissionError; importing ctypes and the other
   modules that bypass the hooks (_ctypes, _posixsubprocess) raises ImportError, so numpy,
   which treats ctypes as optional, still imports and works.
4. `unshare -rn` (a new user + network namespace: no interfaces but loopback) when it
   works unprivileged on this machine.
5. A wall-clock timeout that kills the whole process group.

Limits, stated honestly: an audit hook is not a security boundary against a determined
attacker who finds an interpreter memory-safety bug; without `unshare` the network block
is the hook alone; as root, RLIMIT_NPROC does not apply and the hook is what stops a
fork bomb. For hostile code use a VM or container in addition.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from llmkit.agents.errors import ToolCallError
from llmkit.agents.tools import tool

BOOTSTRAP = r'''
import os, sys
SCRATCH = os.path.realpath(sys.argv[1])
READ_ROOTS = tuple({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                                  sys.base_exec_prefix)})
with open(os.path.join(SCRATCH, "main.py"), encoding="utf-8") as f:
    SOURCE = f.read()
BLOCKED_PREFIXES = ("socket.", "ctypes.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "pty.",
                    "os.fork", "winreg.", "_winapi.")
BLOCKED = {"os.system", "os.kill", "os.killpg", "os.forkpty", "os.setuid", "os.setgid", "os.chroot",
           "resource.setrlimit", "resource.prlimit", "fcntl.ioctl", "mmap.__new__"}
BLOCKED_IMPORTS = {"ctypes", "_ctypes", "_posixsubprocess", "_xxsubinterpreters", "_testcapi", "_testinternalcapi"}
READ_EVENTS = {"os.listdir", "os.scandir", "glob.glob"}
PATH_EVENTS = {"os.chdir", "os.chmod", "os.chown", "os.mkdir", "os.remove", "os.rmdir", "os.rename", "os.link",
               "os.symlink", "os.truncate", "os.utime", "os.setxattr", "os.removexattr", "os.getxattr",
               "os.listxattr", "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.copytree",
               "shutil.rmtree", "shutil.move", "shutil.chown", "shutil.make_archive", "shutil.unpack_archive"}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

def _inside(path, roots):
    p = os.path.realpath(os.fsdecode(path))
    return any(p == r or p.startswith(r.rstrip(os.sep) + os.sep) for r in roots)

def _deny(what):
    raise PermissionError(f"sandbox: {what} is blocked")

def _hook(event, args):
    if event == "open":
        path, mode, flags = args
        if path is None or isinstance(path, int):
            return
        writing = any(c in (mode or "") for c in "wax+") or bool((flags or 0) & WRITE_FLAGS)
        if _inside(path, (SCRATCH,)) or (not writing and _inside(path, READ_ROOTS)):
            return
        _deny(f"access to {os.fsdecode(path)!r} outside the scratch directory")
    elif event in BLOCKED or event.startswith(BLOCKED_PREFIXES):
        _deny(event)
    elif event == "import" and args[0].split(".")[0] in BLOCKED_IMPORTS:
        # ImportError, not PermissionError: libraries that treat ctypes as optional (numpy) fall back
        raise ImportError(f"sandbox: import of {args[0]} is blocked")
    elif event in READ_EVENTS or event in PATH_EVENTS:
        roots = (SCRATCH,) + (READ_ROOTS if event in READ_EVENTS else ())
        for a in args:
            if isinstance(a, (str, bytes, os.PathLike)) and not _inside(a, roots):
                _deny(f"{event} on {os.fsdecode(a)!r} outside the scratch directory")

os.chdir(SCRATCH)
code = compile(SOURCE, "main.py", "exec")
sys.addaudithook(_hook)
exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
'''


# one thread per math library: RLIMIT_NPROC = 0 forbids new threads, and numpy's BLAS would start some
CHILD_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
             "MKL_NUM_THREADS": "1"}


@dataclass
class SandboxLimits:
    cpu_seconds: int = 5
    memory_mb: int = 512  # address space; the interpreter itself needs ~100 MB of it
    wall_seconds: float = 10.0
    file_mb: int = 8  # largest file (and stdout/stderr) the code may write
    open_files: int = 64
    output_chars: int = 4000


@dataclass
class SandboxResult:
    ok: bool
    stdout: str
    stderr: str
    exit_code: int | None
    error: str | None  # a one-line reason when not ok
    seconds: float


@functools.lru_cache(maxsize=1)
def network_namespace_prefix() -> tuple[str, ...]:
    """`unshare -rn` when an unprivileged user + network namespace can be made here, else nothing."""
    exe = shutil.which("unshare")
    if exe is None:
        return ()
    try:
        ok = subprocess.run([exe, "-rn", "true"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return (exe, "-rn") if ok else ()


def _limit(limits: SandboxLimits):
    def apply() -> None:  # runs in the child between fork and exec
        import resource

        def hard(kind, value):
            resource.setrlimit(kind, (value, value))  # soft == hard: the child cannot raise it back

        hard(resource.RLIMIT_CPU, limits.cpu_seconds)
        hard(resource.RLIMIT_AS, limits.memory_mb * 2**20)
        hard(resource.RLIMIT_FSIZE, limits.file_mb * 2**20)
        hard(resource.RLIMIT_NOFILE, limits.open_files)
        hard(resource.RLIMIT_CORE, 0)
        hard(resource.RLIMIT_NPROC, 0)  # no fork, no threads (ignored when running as root)

    return apply


def _tail(text: str, n: int) -> str:
    return text if len(text) <= n else "... " + text[-n:]


def _diagnose(code: int | None, stderr: str, limits: SandboxLimits, timed_out: bool) -> str | None:
    if timed_out:
        return f"timed out after {limits.wall_seconds:g} s of wall-clock time (the process was killed)"
    if code == 0:
        return None
    if code in (-signal.SIGXCPU, -signal.SIGKILL) and "Traceback" not in stderr:
        return f"CPU time limit of {limits.cpu_seconds} s exceeded (the process was killed)"
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    if "MemoryError" in last or "Cannot allocate memory" in stderr:
        return f"memory limit of {limits.memory_mb} MB exceeded (MemoryError)"
    if "PermissionError: sandbox:" in last or "ImportError: sandbox:" in last:
        return "blocked by the sandbox: " + last.split("sandbox:", 1)[1].strip()
    if "File too large" in stderr or code == -signal.SIGXFSZ:
        return f"file size limit of {limits.file_mb} MB exceeded"
    return f"exit code {code}: {last}" if last else f"exit code {code}"


def run_python(code: str, limits: SandboxLimits | None = None, scratch: str | os.PathLike | None = None) -> SandboxResult:
    """Run `code` in the sandbox; the scratch dir (a fresh temp dir unless given) is all it may write."""
    limits = limits or SandboxLimits()
    own_scratch = scratch is None
    scratch_dir = Path(tempfile.mkdtemp(prefix="llmkit-sandbox-") if own_scratch else scratch).resolve()
    io_dir = Path(tempfile.mkdtemp(prefix="llmkit-sandbox-io-"))  # outside scratch: the code cannot touch it
    try:
        (scratch_dir / "main.py").write_text(code, encoding="utf-8")
        cmd = [*network_namespace_prefix(), sys.executable, "-I", "-X", "utf8", "-c", BOOTSTRAP, str(scratch_dir)]
        t0 = time.monotonic()
        with open(io_dir / "out", "wb") as out, open(io_dir / "err", "wb") as err:
            proc = subprocess.Popen(cmd, cwd=scratch_dir, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    env=CHILD_ENV, start_new_session=True,
                                    preexec_fn=_limit(limits))
            timed_out = False
            try:
                proc.wait(timeout=limits.wall_seconds)
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        seconds = time.monotonic() - t0
        stdout = _tail((io_dir / "out").read_text("utf-8", "replace"), limits.output_chars)
        stderr = _tail((io_dir / "err").read_text("utf-8", "replace"), limits.output_chars)
        error = _diagnose(proc.returncode, stderr, limits, timed_out)
        return SandboxResult(error is None, stdout, stderr, proc.returncode, error, seconds)
    finally:
        shutil.rmtree(io_dir, ignore_errors=True)
        if own_scratch:
            shutil.rmtree(scratch_dir, ignore_errors=True)


@tool(example={"question": "What is the sum of the squares of 1 to 10?",
               "arguments": {"code": "print(sum(i * i for i in range(1, 11)))"}, "result": "385"})
def python(code: str) -> str:
    """Run Python code in a sandbox and return what it prints. Use print() to show the result.

    Args:
        code: a complete Python program; no network, no files outside its scratch directory.
    """
    r = run_python(code)
    if not r.ok:
        raise ToolCallError(r.error + (f"\nstdout: {r.stdout.strip()}" if r.stdout.strip() else ""))
    out = r.stdout.strip()
    return out if out else "(no output: print() the result)"
