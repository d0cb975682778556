"""The Python sandbox: escape attempts are contained and come back as one clean error line."""

import json
import os

import pytest

from llmkit.agents.builtin.sandbox import SandboxLimits, network_namespace_prefix, python, run_python
from llmkit.agents.llm import ScriptedChat
from llmkit.agents.loop import Agent

FAST = SandboxLimits(cpu_seconds=2, wall_seconds=5)


def test_ordinary_code_runs_and_may_use_its_scratch_dir(tmp_path):
    code = ("import json, math, collections\nopen('notes.txt', 'w').write('kept')\n"
            "print(json.dumps({'r': math.factorial(10), 'n': open('notes.txt').read()}))")
    r = run_python(code, FAST, scratch=tmp_path)
    assert r.ok, r.stderr
    assert json.loads(r.stdout) == {"r": 3628800, "n": "kept"}
    assert (tmp_path / "notes.txt").read_text() == "kept"


def test_reading_a_file_outside_scratch_is_blocked(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    for code in (f"print(open({str(secret)!r}).read())",
                 f"import pathlib; print(pathlib.Path({str(secret)!r}).read_text())",
                 f"import os; print(os.read(os.open({str(secret)!r}, os.O_RDONLY), 100))",
                 "import os; print(os.listdir('/'))",
                 "print(open('../../etc/passwd').read())"):
        r = run_python(code, FAST)
        assert not r.ok and r.error.startswith("blocked by the sandbox"), (code, r)
        assert "top secret" not in r.stdout


def test_writing_outside_scratch_is_blocked(tmp_path):
    target = tmp_path / "evil.txt"
    r = run_python(f"open({str(target)!r}, 'w').write('x')", FAST)
    assert not r.ok and "blocked by the sandbox" in r.error and not target.exists()
    r = run_python(f"import os; os.remove({str(__file__)!r})", FAST)
    assert not r.ok and os.path.exists(__file__)


@pytest.mark.parametrize("code", [
    "import socket; s = socket.socket(); s.connect(('1.1.1.1', 80))",
    "import socket; socket.create_connection(('127.0.0.1', 22), timeout=1)",
    "import urllib.request; urllib.request.urlopen('http://example.com', timeout=1)",
])
def test_network_is_blocked(code):
    r = run_python(code, FAST)
    assert not r.ok and "socket" in r.error, r


@pytest.mark.parametrize("code", [
    "import os\nwhile True:\n    os.fork()",  # a fork bomb
    "import subprocess; subprocess.run(['ls', '/'])",
    "import os; os.system('ls /')",
    "import os; os.execv('/bin/ls', ['ls'])",
    "import multiprocessing as m; m.Process(target=print).start()",
    "import ctypes; ctypes.CDLL(None).fork()",
])
def test_process_spawning_is_blocked(code):
    r = run_python(code, FAST)
    assert not r.ok and r.error.startswith("blocked by the sandbox"), r


def test_memory_bomb_is_contained():
    for code in ("x = bytearray(10 ** 10)", "chunks = []\nwhile True:\n    chunks.append(b'x' * 10 ** 7)"):
        r = run_python(code, FAST)
        assert not r.ok and "memory limit" in r.error, r


def test_infinite_loop_hits_the_cpu_limit_and_sleep_the_wall_clock():
    r = run_python("while True:\n    pass", SandboxLimits(cpu_seconds=1, wall_seconds=10))
    assert not r.ok and "CPU time limit of 1 s" in r.error
    r = run_python("import time; time.sleep(60)", SandboxLimits(cpu_seconds=5, wall_seconds=1))
    assert not r.ok and "timed out after 1 s" in r.error and r.seconds < 10


def test_output_flood_hits_the_file_size_limit():
    r = run_python("while True:\n    print('x' * 1000)", SandboxLimits(file_mb=1, wall_seconds=10))
    assert not r.ok and "file size limit" in r.error and len(r.stdout) <= 4100


def test_network_namespace_probe_is_cached_and_well_formed():
    prefix = network_namespace_prefix()
    assert prefix == () or prefix[1] == "-rn"


def test_agent_gets_clean_error_observations_from_escape_attempts():
    def call(code):
        return "<tool_call>" + json.dumps({"name": "python", "arguments": {"code": code}}) + "</tool_call>"

    llm = ScriptedChat([call("print(open('/etc/passwd').read())"), call("import os\nwhile True: os.fork()"),
                        call("print(6 * 7)"), "42"])
    r = Agent(llm, [python], few_shot=False, limits=None).run("try")
    assert r.answer == "42"
    assert [x.ok for x in r.tool_results] == [False, False, True]
    assert r.tool_results[0].content.startswith("error: blocked by the sandbox: access to '/etc/passwd'")
    assert r.tool_results[1].content == "error: blocked by the sandbox: os.fork is blocked"
    assert r.tool_results[2].content == "42"


def test_numpy_works_but_its_ctypes_door_stays_shut():
    r = run_python("import numpy as np\nprint(int(np.arange(10).sum()), float(np.linalg.inv(2 * np.eye(2))[0, 0]))")
    assert r.ok and r.stdout.split() == ["45", "0.5"], r
    r = run_python("import numpy as np\nnp.ctypeslib.load_library('libc', '/lib')")
    assert not r.ok and "ctypes is not available" in r.error, r
    r = run_python("import numpy\nimport ctypes")
    assert not r.ok and r.error == "blocked by the sandbox: import of ctypes is blocked", r
