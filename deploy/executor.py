"""The one executor: runs planned steps on one host and records a result per command.

Consecutive remote commands (across steps) are sent as ONE shell script in one SSH session;
markers printed between commands carry each command's exit code back, so a deploy costs a
few sessions per host instead of one per command (each session pays the login shell's
start-up, FACTS). The script stops at the first command whose exit code is not accepted.
"""

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from .commands import Upload, mask
from .transport import CommandTimeout, TransportError, run_local

MARK = "\x1e"
_END = re.compile(r"\n?\x1eE (\d+) (-?\d+)\n")
OUTPUT_TAIL = 4000


@dataclass
class CommandResult:
    step: str
    command: str           # masked rendering, exactly what plans print
    exit_code: int | None  # None: did not finish (timeout, connection lost)
    output: str = ""       # masked, tail
    duration: float = 0.0
    local: bool = False
    ok_codes: tuple = (0,)  # the command's accepted exit codes
    started: float | None = None  # wall clock (epoch seconds), for timelines
    ended: float | None = None

    @property
    def ok(self):
        return self.exit_code == 0 or (self.exit_code is not None and self.exit_code in self.ok_codes)


@dataclass
class StepResult:
    name: str
    kind: str
    status: str = "pending"   # ok / failed / skipped / pending
    duration: float = 0.0
    commands: list = field(default_factory=list)
    started: float | None = None  # wall clock (epoch seconds), for timelines
    ended: float | None = None

    @property
    def failed_command(self):
        return next((c for c in self.commands if not c.ok), None)


def _wall(mono):
    """A time.monotonic() reading as epoch seconds: reports need wall-clock times."""
    return time.time() - (time.monotonic() - mono)


def _own_session(cmd):
    """Local commands (rsync) and uploads cannot ride in a remote shell script."""
    return cmd.local or isinstance(cmd, Upload)


def _tail(output, cmd):
    """Reports keep the end of long outputs; a command whose output is data (capture) keeps it all."""
    return output if cmd.capture else output[-OUTPUT_TAIL:]


class Runner:
    """Runs PlannedSteps on one connected host."""

    def __init__(self, transport, host, emit, secrets=(), stop=None):
        self.transport = transport
        self.stop = stop          # threading.Event: Ctrl-C/SIGTERM; checked between sessions only
        self.host = host
        self.emit = emit
        self.secrets = set(secrets)  # every secret value seen in this host's commands
        self.facts = {}
        self.executed = []   # masked renderings, in order: the proof that plan == execution

    def run(self, planned_steps, interruptible=False):
        """Run the steps in order; stop at the first failing command.

        With `interruptible`, a stop request (Ctrl-C) is honoured before each session starts,
        never inside one: the step that was about to start is marked "interrupted".

        Returns the StepResults (failed step last). Raises TransportError if the host is lost;
        the results so far are on the exception (`.results`).
        """
        results = [StepResult(s.name, s.kind) for s in planned_steps]
        for s in planned_steps:
            for c in s.commands:
                self.secrets.update(c.secrets)
        items = [(si, ci, c) for si, s in enumerate(planned_steps) for ci, c in enumerate(s.commands)]
        for r, s in zip(results, planned_steps):
            if not s.commands:
                r.status = "ok"
        i = 0
        try:
            while i < len(items):
                si, ci, cmd = items[i]
                if interruptible and self.stop is not None and self.stop.is_set():
                    results[si].status = "interrupted"
                    self.emit({"type": "step", "host": self.host.name, "step": results[si].name, "result": results[si]})
                    break
                if _own_session(cmd):
                    ok = self._run_single(planned_steps, results, si, cmd)
                    i += 1
                else:
                    j = i
                    while j < len(items) and not _own_session(items[j][2]):
                        j += 1
                    ok = self._run_batch(planned_steps, results, items[i:j])
                    i = j
                if not ok:
                    break
        except TransportError as exc:
            exc.results = results
            raise
        for r in results:
            if r.status == "pending":
                r.status = "skipped"
        return results

    # -- one local command or upload
    def _run_single(self, planned, results, si, cmd):
        step, res = planned[si], results[si]
        self._step_started(step, res)
        start = time.monotonic()
        if isinstance(cmd, Upload):
            self.transport.put(str(Path(__file__).parent.parent / cmd.local_path), cmd.remote_path, cmd.mode)
            out, code = "", 0
        else:
            try:
                # rsync's -e program (deploy/rsh.py) finds this host's SSH connection here.
                env = {"DEPLOY_RSH_SOCKET": self.transport.rsh_socket()}
                out, err, code = run_local(cmd.render(reveal=True), timeout=self.host.command_timeout, env=env)
                out = out + err
                if code != 0:
                    out += self.transport.rsh_errors()
            except CommandTimeout as exc:
                out, code = str(exc), None
        cr = self._record(step, res, cmd, code, out, time.monotonic() - start, local=True, began=start)
        return self._after_command(step, res, cr, last=cmd is step.commands[-1])

    def _record(self, step, res, cmd, code, output, duration, local=False, began=None):
        """One finished command: its result (masked output), its captured fact, the event."""
        self.executed.append(cmd.render())
        cr = CommandResult(step.name, cmd.render(), code, _tail(mask(output, self.secrets), cmd), duration,
                           local=local, ok_codes=cmd.ok_codes)
        began = time.monotonic() - duration if began is None else began
        cr.started, cr.ended = _wall(began), _wall(began + duration)
        if cmd.capture:
            self.facts[cmd.capture] = output.strip()
        res.commands.append(cr)
        self.emit({"type": "command", "host": self.host.name, "step": step.name, "result": cr})
        return cr

    # -- a run of remote commands as one script
    def _run_batch(self, planned, results, items):
        parts = []
        for n, (si, ci, cmd) in enumerate(items):
            ok = "|".join(str(c) for c in cmd.ok_codes)
            parts.append(f"printf '\\036B {n}\\n'; ( {cmd.render(reveal=True)}\n) </dev/null 2>&1; __rc=$?;"
                         f" printf '\\n\\036E {n} %d\\n' $__rc; case $__rc in {ok}) ;; *) exit 0;; esac")
        script = "\n".join(parts) + "\n"
        state = {"buf": "", "begin": {}, "end": {}}

        def started(n):
            si, _, _ = items[n]
            state["begin"][n] = time.monotonic()
            self._step_started(planned[si], results[si])

        def on_output(chunk):
            # Live progress only; exit codes are taken from the complete output below.
            state["buf"] += chunk
            while "\n" in state["buf"]:
                line, state["buf"] = state["buf"].split("\n", 1)
                if line.startswith(MARK + "B "):
                    started(int(line[3:]))
                elif line.startswith(MARK + "E "):
                    state["end"][int(line.split()[1])] = time.monotonic()

        timed_out = None
        t0 = time.monotonic()
        try:
            out, err, _ = self.transport.run(script, timeout=self.host.command_timeout, on_output=on_output)
        except CommandTimeout as exc:
            out, err, timed_out = "", "", str(exc)
        except TransportError as exc:
            out, err = "", ""
            self._record_batch(planned, results, items, "", t0, state, lost=str(exc))
            raise
        return self._record_batch(planned, results, items, out + err, t0, state, timed_out=timed_out)

    def _record_batch(self, planned, results, items, out, t0, times, timed_out=None, lost=None):
        now = time.monotonic()
        pos = 0
        for n, (si, ci, cmd) in enumerate(items):
            step, res = planned[si], results[si]
            begin = out.find(f"{MARK}B {n}\n", pos)
            if begin < 0:
                # Never started: the session ended before it (timeout, lost connection, or an
                # earlier command failed and the script stopped, which was recorded already).
                if (n == 0 or timed_out or lost) and n == self._first_unfinished(out, len(items)):
                    self._unfinished(step, res, cmd, timed_out or lost or "")
                return False
            start = begin + len(f"{MARK}B {n}\n")
            m = _END.search(out, start)
            if not m or int(m.group(1)) != n:
                # Started but its end marker never came: the session ended while it ran.
                self._unfinished(step, res, cmd, out[start:] + "\n" + (timed_out or lost or "session ended"))
                return False
            output = out[start:m.start()]
            code = int(m.group(2))
            pos = m.end()
            self._step_started(step, res)
            began, ended = times["begin"].get(n, t0), times["end"].get(n, now)
            if getattr(res, "_t0", None) is None or res.status == "running" and ci == 0:
                res._t0 = began
                res.started = _wall(began)
            cr = self._record(step, res, cmd, code, output, max(0.0, ended - began), began=began)
            if not self._after_command(step, res, cr, last=ci == len(step.commands) - 1, now=ended):
                return False
        return True

    def _unfinished(self, step, res, cmd, output):
        """Record a command that did not finish (exit code None) and fail its step."""
        self._step_started(step, res)
        self._record(step, res, cmd, None, output.strip(), 0.0)
        res.status = "failed"
        res.ended = _wall(time.monotonic())
        self.emit({"type": "step", "host": self.host.name, "step": step.name, "result": res})

    def _first_unfinished(self, out, count):
        for n in range(count):
            if f"{MARK}E {n} " not in out:
                return n
        return count

    def _step_started(self, step, res):
        if res.status == "pending":
            res.status = "running"
            res._t0 = time.monotonic()
            res.started = _wall(res._t0)
            self.emit({"type": "step_start", "host": self.host.name, "step": step.name})

    def _after_command(self, step, res, cr, last, now=None):
        now = now or time.monotonic()
        if not cr.ok:
            res.status = "failed"
            res.duration = now - getattr(res, "_t0", now)
            res.ended = _wall(now)
            self.emit({"type": "step", "host": self.host.name, "step": step.name, "result": res})
            return False
        if last:
            res.status = "ok"
            res.duration = now - getattr(res, "_t0", now)
            res.ended = _wall(now)
            self.emit({"type": "step", "host": self.host.name, "step": step.name, "result": res})
        return True
