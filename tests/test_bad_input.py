"""Every bad input ends cleanly: exit 2, one `error:` message naming file:line and key (or the
flag) with a hint, no traceback, and no connection to any host.

The cases are data (tests/bad_input/cases.yml, format in tests/bad_input/README.md). Each case
gets its own directory and its own TCP listener on 127.0.0.1; every host of its inventory points
at that listener, which counts the connections it accepts. Every case runs in-process through
the project's `fab` program class (deploy.cliargs.Program: the same parser, tasks and code as
`fab`, without a Python start-up per case); the cases marked `real` also run as real `fab`
subprocesses, in parallel. test_the_listener_sees_a_real_connection shows the listener does
count a connection when the tool makes one.
"""

import io
import os
import re
import selectors
import shlex
import socket
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import fabric
import pytest
import yaml

from deploy import cliargs
from helpers import PROJECT, fab

CASES_FILE = Path(__file__).parent / "bad_input" / "cases.yml"
CASES = yaml.safe_load(CASES_FILE.read_text())
FAMILIES = ("bytes", "yaml", "values", "paths", "refs", "flags", "cli", "hostile")

INVENTORY = """\
defaults:
  key: $DIR/ssh/id
  known_hosts: $DIR/ssh/known_hosts
  connect_timeout: 2
  health_url: http://127.0.0.1/version
  fpm: {socket: /run/php/php8.2-fpm.sock, reload: sudo -n systemctl reload php8.2-fpm}
hosts:
  a: {address: 127.0.0.1, port: $PORT$HOST}
  b: {address: 127.0.0.1, port: $PORT}
groups:
  web: [a, b]
"""
PIPELINE = "source: $DIR/app\nsteps:\n$STEPS"
STEPS = ("  - sync\n  - shared\n  - ownership\n  - artisan\n  - activate\n  - opcache_reset\n  - fpm_reload\n"
         "  - verify: {timeout: 5}\n")
TAKES_INVENTORY = {"deploy", "plan", "rollback", "releases", "unlock", "health", "heal"}
TAKES_PIPELINE = TAKES_INVENTORY - {"unlock"}


class Listeners:
    """TCP listeners on 127.0.0.1 that count the connections they accept (one per case)."""

    def __init__(self):
        self.selector = selectors.DefaultSelector()
        self.counts = {}
        self.accepted = []
        self.lock = threading.Lock()
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def new(self):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.setblocking(False)
        port = sock.getsockname()[1]
        with self.lock:
            self.counts[port] = 0
            self.selector.register(sock, selectors.EVENT_READ, port)
        return port

    def _serve(self):
        while not self.stop:
            with self.lock:
                ready = self.selector.select(timeout=0) if self.selector.get_map() else []
            for key, _ in ready:
                try:
                    conn, _ = key.fileobj.accept()
                except BlockingIOError:
                    continue
                with self.lock:
                    self.counts[key.data] += 1
                    self.accepted.append(conn)  # held open (like a host that never answers) until close()
            threading.Event().wait(0.01)

    def seen(self, port):
        with self.lock:
            return self.counts[port]

    def settle(self):
        threading.Event().wait(0.1)  # let the accept loop pick up a connection made at the very end

    def close(self):
        self.stop = True
        self.thread.join()
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
        for conn in self.accepted:
            conn.close()


def _subst(text, d, port):
    return (text.replace("$INV", str(d / "hosts" / "inv.yml")).replace("$PIPE", str(d / "playbooks" / "p.yml"))
            .replace("$DIR", str(d)).replace("$PORT", str(port)))


def prepare(case, d, port):
    """Write the case's files into d; returns (argv, env)."""
    for sub in ("hosts", "playbooks", "app", "ssh", "home"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    (d / "app" / "index.php").write_text("<?php echo 'ok';\n")
    (d / "ssh" / "id").write_text("not a real key: the tool never gets as far as reading it\n")
    (d / "ssh" / "known_hosts").write_text("")
    host = case.get("host", "")
    # A case that sets address or port itself replaces the default one (no duplicate key).
    defaults = [f"{k}: {v}" for k, v in (("address", "127.0.0.1"), ("port", "$PORT"))
                if not re.search(rf"(^|, ){k}:", host)]
    line = ", ".join(defaults + ([host] if host else []))
    files = {
        "hosts/inv.yml": _file(case, "inventory", INVENTORY.replace("address: 127.0.0.1, port: $PORT$HOST", line)),
        "playbooks/p.yml": _file(case, "pipeline", PIPELINE.replace("$STEPS", case.get("steps", STEPS))),
    }
    for rel, text in (case.get("files") or {}).items():
        files[rel] = text.encode()
    for rel, data in files.items():
        data = _subst(data.decode("latin-1"), d, port).encode("latin-1")
        if rel == "hosts/inv.yml" and case.get("pad_inventory_to"):
            line = b"# " + b"x" * 77 + b"\n"
            data += line * ((case["pad_inventory_to"] - len(data)) // len(line) + 1)
        (d / rel).write_bytes(data)
    argv = [_subst(word, d, port) for word in shlex.split(case.get("run", "deploy --host a"))]
    task = next((w for w in argv if not w.startswith("-")), None)
    if not case.get("noauto"):
        if task in TAKES_INVENTORY and "--inventory" not in argv:
            argv += ["--inventory", str(d / "hosts" / "inv.yml")]
        if task in TAKES_PIPELINE and "--pipeline" not in argv:
            argv += ["--pipeline", str(d / "playbooks" / "p.yml")]
    env = {"HOME": str(d / "home"), **(case.get("env") or {})}
    return argv, env


def _file(case, name, default):
    """The bytes of the inventory or pipeline (still latin-1 text for the placeholders)."""
    if f"{name}_latin1" in case:
        return case[f"{name}_latin1"].encode("latin-1")
    return case.get(name, default).encode("utf-8")


def run_in_process(argv, env):
    """Run `fab ARGV` in this process: the project's Program, exactly as the `fab` script does."""
    program = cliargs.Program(name="Fabric", version=fabric.__version__, executor_class=fabric.Executor,
                              config_class=fabric.Config)
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.update(env, COLUMNS="200")
    os.chdir(PROJECT)
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                program.run(["fab", *argv])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:  # what a user would see as a traceback
                err.write(traceback.format_exc())
                code = 1
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    listeners = Listeners()
    root = tmp_path_factory.mktemp("bad_input")
    prepared = {}
    for case in CASES:
        port = listeners.new()
        d = root / case["id"]
        prepared[case["id"]] = (port, *prepare(case, d, port))
    out = {}

    def real(case_id):
        port, argv, env = prepared[case_id]
        r = fab(*argv, timeout=60, env=env)
        return case_id, (r.returncode, r.stdout, r.stderr)

    # Real `fab` subprocesses first, in parallel (the in-process runs below change cwd and env).
    with ThreadPoolExecutor(max_workers=4) as pool:
        for case_id, res in pool.map(real, [c["id"] for c in CASES if c.get("real")]):
            out[(case_id, "fab")] = res
    for case in CASES:
        port, argv, env = prepared[case["id"]]
        out[(case["id"], "in-process")] = run_in_process(argv, env)
    listeners.settle()
    seen = {cid: listeners.seen(port) for cid, (port, _, _) in prepared.items()}
    listeners.close()
    return out, seen, prepared


def _params():
    for case in CASES:
        yield pytest.param(case, "in-process", id=f"{case['id']}")
        if case.get("real"):
            yield pytest.param(case, "fab", id=f"{case['id']}[fab]")


@pytest.mark.parametrize("case, mode", list(_params()))
def test_bad_input_ends_cleanly(results, case, mode):
    out, seen, prepared = results
    code, stdout, stderr = out[(case["id"], mode)]
    text = stdout + stderr
    _, argv, _ = prepared[case["id"]]
    context = f"fab {shlex.join(argv)}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    assert "Traceback" not in text, context
    assert code == 2, context
    assert stdout == "", context  # errors go to stderr; nothing else is printed
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, context
    first = errors[0]
    if case.get("where"):
        assert case["where"] in first, context
        if re.search(r":\d+$", case["where"]):
            assert case["where"] + ":" in first, context  # file:line, not file:line0
    if case.get("key"):
        assert f"key '{case['key']}'" in first, context
    if case.get("flag"):
        assert case["flag"] in first, context
    for words in case.get("says", []):
        assert words in text, (words, context)
    if not case.get("no_hint"):
        assert "\n  hint: " in stderr, context
    assert seen[case["id"]] == 0, f"the tool connected to a host: {context}"


def test_the_cases_are_well_formed():
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    assert len(CASES) >= 100
    for case in CASES:
        assert case["family"] in FAMILIES, case["id"]
        # Each case says where the message must point: file(:line) or the flag.
        assert case.get("where") or case.get("flag"), case["id"]
    for family in FAMILIES:
        assert sum(c["family"] == family for c in CASES) >= 5, family
    assert sum(bool(c.get("real")) for c in CASES) >= 20


def test_the_listener_sees_a_real_connection(tmp_path):
    """The 'no connection' assertion can fail: a valid inventory makes the tool connect."""
    listeners = Listeners()
    try:
        port = listeners.new()
        argv, env = prepare({"id": "control"}, tmp_path, port)
        r = fab("releases", "--host", "a", "--inventory", argv[argv.index("--inventory") + 1], timeout=60, env=env)
        assert r.returncode == 1, r.stdout + r.stderr
        listeners.settle()
        assert listeners.seen(port) >= 1
    finally:
        listeners.close()


def test_plan_does_not_need_the_controller_files(tmp_path):
    """`fab plan` never connects, so a missing key or known_hosts file is not its business."""
    argv, env = prepare({"id": "plan", "host": "key: $DIR/ssh/nope, known_hosts: $DIR/ssh/nope"}, tmp_path, 1)
    code, stdout, stderr = run_in_process(["plan", *argv[1:]], env)
    assert code == 0, stdout + stderr
    assert "# host a" in stdout


# ---------------------------------------------------------------------------- CLI conventions

def _help_flags(task):
    r = fab("--help", task, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    options = r.stdout.split("Options:", 1)[1]
    return {m.group(1) for m in re.finditer(r"^\s+(--[a-z][a-z0-9-]*)", options, re.M)}


def _documented_flags(doc, task):
    """The flags docs/commands.md lists for TASK: in its `## fab TASK` (or ###) section, the
    backticked flags of `Flags:` lines and of the first cell of table rows."""
    heading = re.search(rf"^(#{{2,3}}) fab {re.escape(task)}\n", doc, re.M)
    assert heading, f"docs/commands.md has no section '## fab {task}'"
    level = len(heading.group(1))
    rest = doc[heading.end():]
    end = re.search(rf"^#{{2,{level}}} ", rest, re.M)
    section = rest[:end.start()] if end else rest
    flags = set()
    for line in section.splitlines():
        if line.startswith("Flags:"):
            flags |= set(re.findall(r"`(--[a-z][a-z0-9-]*)[^`]*`", line))
        elif line.startswith("| `--"):
            flags |= set(re.findall(r"`(--[a-z][a-z0-9-]*)[^`]*`", line.split("|")[1]))
    return flags


def test_docs_list_exactly_the_flags_fab_help_shows():
    doc = (PROJECT / "docs" / "commands.md").read_text()
    listing = fab("--list", timeout=60).stdout
    tasks = re.findall(r"^  ([a-z][a-z.]*[a-z])\s", listing, re.M)
    assert {"deploy", "plan", "rollback", "releases", "unlock", "health", "heal", "lab.up", "lab.down"} <= set(tasks)
    for task in tasks:
        assert _documented_flags(doc, task) == _help_flags(task), task


@pytest.mark.parametrize("argv", [["deploy", "--help"], ["deploy", "-h"], ["--help", "deploy"], ["-h", "rollback"],
                                  ["plan", "--host", "a", "--help"]])
def test_task_help_works_and_h_is_help(argv):
    r = fab(*argv, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("Usage: fab [--core-opts] ") and "--host=STRING" in r.stdout
    assert not re.search(r"^\s+-[a-z],", r.stdout, re.M), "task flags are long only"
