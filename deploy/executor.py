"""The one executor: runs planned steps on one host and records a result per command.

Consecutive remote commands (across steps) are sent as ONE shell script in one SSH session;
markers printed between commands carry each command's exit code back, so a deploy costs one
shell session per host (and rsync's channel) instead of one per command (each session pays
the login shell's start-up, docs/why.md). The script stops at the first command whose exit
code is not accepted.

Markers (a line starting with \\x1e):
  P pid       the session's shell (a process group leader: sshd starts each session with setsid)
  B n / E n rc  command n began / ended with exit code rc
  G n         the script waits on its stdin before command n (a *gated* command: the switch of
              `current`); the executor answers "go", or "stop" after Ctrl-C, so a switch only
              ever happens while the tool is there to see it, and never after it was told to stop
  X n         the gate said stop: the script ended before command n
  W n         a part of the script ended well; it waits on its stdin before command n, the
              first of the part the caller runs next (Runner.run's `then`, Runner.start): that
              part then goes on in this session instead of a new one, which saves a login
              shell's start-up and a channel's round trips per host (docs/benchmark.md); any
              other next run answers "stop" (X n) first
A command's own timeout is enforced here, from its B marker: past it the session is dropped and
the session's process group is killed on the host. Output received before a timeout or a lost
connection is kept, so the caller knows which commands finished (the switch among them).
"""

import re
import time
from dataclasses import dataclass, field

from . import remote
from .commands import mask
from .context import Paths
from .transport import CommandTimeout, SessionLost, TransportError

MARK = "\x1e"
_LINE = re.compile(r"\x1e([PBEGXW]) (\d+)(?: (-?\d+))?\n")
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
    status: str = "pending"   # ok / failed / interrupted / skipped / pending
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
    """Local commands (rsync) cannot ride in a remote shell script."""
    return cmd.local


def _tail(output, cmd):
    """Reports keep the end of long outputs; a command whose output is data (capture) keeps it all."""
    return output if cmd.capture else output[-OUTPUT_TAIL:]


def batch_script(commands, start=0, pid=True):
    """The shell script of one session: each command in a subshell, its output and exit code
    framed by markers; the script stops at the first command whose exit code is not accepted.
    Commands are numbered from `start` (a part that follows another in the same session)."""
    parts = ["printf '\\036P %s\\n' \"$$\""] if pid else []
    for n, cmd in enumerate(commands, start):
        if cmd.gate or cmd.hold:
            parts.append(_wait("G", n))
        ok = "|".join(str(c) for c in cmd.ok_codes)
        parts.append(f"printf '\\036B {n}\\n'; ( {cmd.render(reveal=True)}\n) </dev/null 2>&1; __rc=$?;"
                     f" printf '\\n\\036E {n} %d\\n' $__rc; case $__rc in {ok}) ;; *) exit 0;; esac")
    return "\n".join(parts) + "\n"


def _wait(tag, n):
    """Print the marker, then wait for "go" on stdin; anything else ends the script (X n)."""
    return (f"printf '\\036{tag} {n}\\n'; IFS= read -r __go || __go=;"
            f" [ \"$__go\" = go ] || {{ printf '\\036X {n}\\n'; exit 0; }}")


def parted_script(parts):
    """One session for several parts (lists of commands): a pause (W) before each part after the
    first (see Runner.run). Returns the script and, per later part, (its first number, its script)."""
    script, later, n = "", [], 0
    for k, commands in enumerate(parts):
        part = batch_script(commands, n, pid=False)
        if k == 0:
            script = batch_script([]) + part
        else:
            script += _wait("W", n) + "\n" + part
            later.append((n, part))
        n += len(commands)
    return script, later


def _first_batch(planned_steps):
    """The remote commands a run of these steps sends first: after any local commands that
    lead (rsync), up to the next local one."""
    cmds = [c for s in planned_steps for c in s.commands]
    i = 0
    while i < len(cmds) and _own_session(cmds[i]):
        i += 1
    j = i
    while j < len(cmds) and not _own_session(cmds[j]):
        j += 1
    return cmds[i:j]


class _Watch:
    """Follows one session's markers as output arrives: step progress, gates, command deadlines."""

    def __init__(self, runner, planned, results, items, interruptible=False, base=0):
        self.runner, self.planned, self.results, self.items = runner, planned, results, items
        self.base = base          # the number of this part's first command in the script
        self.paused = False       # the script reached its pause (W): this part is done
        self.interruptible = interruptible   # a signal may cut it (cleanup and rollbacks: never)
        self.buf = ""
        self.begin, self.end = {}, {}
        self.running = None       # index of the command that began and has not ended
        self.deadline = None
        self.timed_out = None     # index of the command that ran past its timeout
        self.gate = None          # "go" / "stop": the answer given at a gate, if any
        self.waiting = None       # the command whose gate waits for an answer not given yet
        self.gated = any(c.gate for _, _, c in items)
        self.cut = None           # why the session was cut by a signal

    def output(self, chunk):
        self.buf += chunk
        reply = None
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            m = _LINE.match(line + "\n")
            if not m:
                continue
            tag, n = m.group(1), int(m.group(2)) - self.base
            if tag == "W":
                self.paused = True
            elif n < 0:
                continue
            elif tag == "P":
                self.runner.remote_pid = n
            elif tag == "B":
                si, _, cmd = self.items[n]
                self.begin[n] = time.monotonic()
                self.running = n
                self.deadline = self.begin[n] + (cmd.timeout or self.runner.host.command_timeout)
                self.runner._step_started(self.planned[si], self.results[si])
            elif tag == "E":
                self.end[n] = time.monotonic()
                self.running = None
                cmd = self.items[n][2]
                if cmd.signal and self.runner.on_signal:
                    self.runner.on_signal(cmd.signal, int(m.group(3)))
            elif tag == "G":
                self.waiting = n
                reply = self._answer()
        return reply

    def _answer(self):
        """The gate's answer: "stop" once a stop was asked for, else what the fleet says (it may
        hold the switch until a once-per-fleet step ran elsewhere: None means not yet)."""
        stop = self.runner.stop is not None and self.runner.stop.is_set()
        answer = "stop" if stop else (self.runner.gate_hook() if self.runner.gate_hook else "go")
        if answer is None:
            return None
        if self.items[self.waiting][2].gate:
            # Only the switch's answer tells whether current may have moved.
            self.gate = answer
            self.runner.gates.append(answer)
        self.waiting = None
        return answer + "\n"

    def tick(self):
        if self.running is not None and time.monotonic() > self.deadline:
            self.timed_out = self.running
            return False
        self.cut = self._cut() if self.interruptible else None
        if self.cut:
            return False
        if self.waiting is not None:
            return self._answer()
        return True

    def _cut(self):
        """Why a signal cuts this session now, if it does."""
        runner = self.runner
        if runner.abort is not None and runner.abort.is_set():
            return "stopped by a second signal; stopped on the host"
        if (runner.stop is not None and runner.stop.is_set() and self.gated and self.gate is None
                and (self.running is None or self.items[self.running][2].cut_on_stop)):
            # This session will not switch anyway: stop its build now rather than at the gate.
            return "interrupted before the switch; stopped on the host"
        return None


class Runner:
    """Runs PlannedSteps on one connected host."""

    def __init__(self, transport, host, emit, secrets=(), stop=None, gate_hook=None, on_signal=None, abort=None):
        self.transport = transport
        self.abort = abort            # threading.Event: a second signal; running sessions are cut
        self.gate_hook = gate_hook    # () -> "go" / "stop" / None (not yet): the fleet's say at a gate
        self.on_signal = on_signal    # (signal, exit code): a command marked `signal` ended
        self.stop = stop          # threading.Event: Ctrl-C/SIGTERM; honoured between sessions and at gates
        self.host = host
        self.emit = emit
        self.secrets = set(secrets)  # every secret value seen in this host's commands
        self.facts = {}
        self.executed = []   # masked renderings, in order: the proof that plan == execution
        self.gates = []      # every gate answer given, in order ("go" means: the switch may have run)
        self.installed = []  # programs installed on the host by this runner (labels)
        self.remote_pid = None
        self.refused = None   # why the last run's barrier stopped it, if it did

    def run(self, planned_steps, interruptible=False, then=None, barrier=None):
        """Run the steps in order; stop at the first failing command.

        With `interruptible`, a stop request (Ctrl-C) is honoured before each session starts;
        the step that was about to start is marked "interrupted". Gated commands (the switch)
        are refused once a stop was requested, whatever `interruptible` says: their step is
        "interrupted" too.

        `then`: the steps the caller means to run next (the build after lock and prepare).
        When this run's last session ends well, it waits (W) instead of ending, its script
        already holding the first commands of `then`; the next run() that sends exactly those
        commands goes on in that session (no new session, no login shell: docs/benchmark.md),
        and any other use of the connection ends it first. The caller may decide anything in
        between (install programs, give up): nothing of `then` runs unless it is asked for.

        `barrier()`: asked before the first remote commands of this run (local ones, rsync, may
        run before it); it blocks until they may start, or a stop was asked for, and returns
        None, or returns why they must not: the step about to run is then "interrupted" (by a
        stop too, as before any session of an interruptible run) and `refused` says why
        (fleet._Locks).

        Returns the StepResults (failed step last). Raises SessionLost / TransportError if the
        host is lost; the results so far (every command that finished) are on the exception
        (`.results`).
        """
        results = [StepResult(s.name, s.kind) for s in planned_steps]
        for s in planned_steps:
            for c in s.commands:
                self.secrets.update(c.secrets)
        items = [(si, ci, c) for si, s in enumerate(planned_steps) for ci, c in enumerate(s.commands)]
        for r, s in zip(results, planned_steps):
            if not s.commands:
                r.status = "ok"
        waiting = self.transport.paused   # left by an earlier run
        self._went_on = False
        self.refused = None
        i = 0
        try:
            while i < len(items):
                si, ci, cmd = items[i]
                if interruptible and self.signalled():
                    self._interrupted(planned_steps[si], results[si])
                    break
                if _own_session(cmd):
                    ok = self._run_single(planned_steps, results, si, cmd)
                    i += 1
                else:
                    if barrier is not None:
                        self.refused, barrier = barrier(), None
                        if self.refused or (interruptible and self.signalled()):
                            self._interrupted(planned_steps[si], results[si])
                            break
                    j = i
                    while j < len(items) and not _own_session(items[j][2]):
                        j += 1
                    tail = _first_batch(then) if then and j == len(items) else None
                    ok = self._run_batch(planned_steps, results, items[i:j], interruptible, tail=tail)
                    i = j
                if not ok:
                    break
        except TransportError as exc:
            exc.results = results
            for r in results:
                if r.status == "pending":
                    r.status = "skipped"
            raise
        finally:
            if waiting is not None and self.transport.paused is waiting and not self._went_on:
                self.end_paused()   # this run did not go on with it: end it now
        for r in results:
            if r.status == "pending":
                r.status = "skipped"
        return results

    def end_paused(self):
        """End a session left waiting (W) that nobody goes on with: it stops before its next part."""
        paused = self.transport.paused
        if paused is not None:
            try:
                self.transport.resume(paused, "stop\n")   # clears transport.paused
            except TransportError:
                pass

    def start(self, steps, then=None):
        """Start the host's session now, waiting (W) before `steps` (and then before `then`'s first
        commands): the next run() of exactly those goes on in it. A fleet whose hosts all start at
        once opens every host's session this way, then takes the locks in order (fleet._Locks),
        so the hosts' login shells start side by side instead of one after the other."""
        parts = [[], [c for s in steps for c in s.commands]] + ([_first_batch(then)] if then else [])
        script, later = parted_script(parts)
        watch = _Watch(self, [], [], [])
        self.remote_pid = None
        session = self.transport.run(script, on_output=watch.output, tick=watch.tick, pause=lambda: watch.paused)
        if session.paused is None:
            raise SessionLost(f"the session on {self.host.name} ended before its first command: "
                              + (session.output + session.stderr).strip()[-300:])
        session.paused.parts, session.paused.pid = later, self.remote_pid

    def install(self, names):
        """Install the tool's programs that the host lacks (see deploy/remote/); recorded in
        `installed`, apart from `executed`: it depends on the host, the plan does not."""
        if not names:
            return
        t0 = time.monotonic()
        self.transport.install(remote.bin_dir(Paths(self.host.deploy_path)),
                               {n: remote.local_path(n).read_bytes() for n in names})
        self.installed.extend(remote.label(n) for n in names)
        self.emit({"type": "message", "host": self.host.name,
                   "text": f"installed {', '.join(names)} ({time.monotonic() - t0:.2f}s)"})

    # -- one local command
    def _run_single(self, planned, results, si, cmd):
        step, res = planned[si], results[si]
        self._step_started(step, res)
        start = time.monotonic()
        try:
            # rsync's -e program (deploy/rsh.py) finds this host's SSH connection here.
            env = {"DEPLOY_RSH_SOCKET": self.transport.rsh_socket()}
            out, err, code = self.transport.run_local(cmd.render(reveal=True),
                                                      timeout=cmd.timeout or self.host.command_timeout, env=env)
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
    def signalled(self):
        return any(e is not None and e.is_set() for e in (self.stop, self.abort))

    def _run_batch(self, planned, results, items, interruptible=False, tail=None):
        commands = [cmd for _, _, cmd in items]
        paused = self.transport.paused
        base = 0
        if paused is not None and paused.parts[0][1] == batch_script(commands, paused.parts[0][0], pid=False):
            base = paused.parts[0][0]   # this part is already in that session's script: go on there
        elif paused is not None:
            self.end_paused()
            paused = None
        watch = _Watch(self, planned, results, items, interruptible, base=base)
        t0 = time.monotonic()
        try:
            if paused is not None:
                self._went_on = True
                self.remote_pid = paused.pid
                later = paused.parts[1:]
                session = self.transport.resume(paused, "go\n", on_output=watch.output, tick=watch.tick,
                                                pause=(lambda: watch.paused) if later else None)
            else:
                later = []
                if tail:
                    script, later = parted_script([commands, tail])
                else:
                    script = batch_script(commands)
                self.remote_pid = None
                session = self.transport.run(script, on_output=watch.output, tick=watch.tick,
                                             keep_stdin=any(c.gate or c.hold for c in commands),
                                             pause=(lambda: watch.paused) if later else None)
        except SessionLost as exc:
            self._record_batch(planned, results, items, exc.output, t0, watch, unfinished=str(exc))
            raise
        if session.paused is not None:
            # The next part waits in this session: what it is, and whose shell it runs in.
            session.paused.parts, session.paused.pid = later, self.remote_pid
        if session.aborted:
            self.kill_remote()
            if watch.timed_out is None:
                self._record_batch(planned, results, items, session.output, t0, watch, unfinished=watch.cut,
                                   interrupted=True)
                return False
            limit = items[watch.timed_out][2].timeout or self.host.command_timeout
            self._record_batch(planned, results, items, session.output, t0, watch,
                               unfinished=f"timed out after {limit}s (the command's timeout); stopped on the host")
            return False
        return self._record_batch(planned, results, items, session.output + session.stderr, t0, watch)

    def kill_remote(self):
        """End what is left of an abandoned session: its whole process group (sudo for what
        runs as root under a non-root login, where sudoers allows kill)."""
        if not self.remote_pid:
            return
        pg = f"-{int(self.remote_pid)}"
        script = (f"kill -TERM -- {pg} 2>/dev/null || sudo -n kill -TERM -- {pg} 2>/dev/null; sleep 1;"
                  f" kill -KILL -- {pg} 2>/dev/null || sudo -n kill -KILL -- {pg} 2>/dev/null; true")
        try:
            self.transport.run(script)
        except TransportError:
            pass

    def _record_batch(self, planned, results, items, out, t0, watch, unfinished=None, interrupted=False):
        """Turn a session's output into results. `unfinished`: why the session ended early (the
        command that began and never ended gets exit code None with that reason)."""
        now = time.monotonic()
        pos = 0
        for n, (si, ci, cmd) in enumerate(items):
            step, res = planned[si], results[si]
            mark = n + watch.base   # the command's number in the session's script
            stopped = out.find(f"{MARK}X {mark}\n", pos)
            begin = out.find(f"{MARK}B {mark}\n", pos)
            if stopped >= 0 and (begin < 0 or stopped < begin):
                self._interrupted(step, res)
                return False
            if begin < 0:
                # Never started: the session ended before it (timeout, lost connection, a signal,
                # or the login shell failed). An earlier failed command returned above already.
                if interrupted:
                    self._interrupted(step, res)
                    return False
                self._unfinished(step, res, cmd, unfinished or
                                 "the session ended before this command began: " + out.strip()[-300:])
                return False
            start = begin + len(f"{MARK}B {mark}\n")
            m = re.compile(r"\n?\x1eE " + str(mark) + r" (-?\d+)\n").search(out, start)
            if not m:
                # Started but its end marker never came: the session ended while it ran.
                self._unfinished(step, res, cmd, out[start:] + "\n" + (unfinished or "session ended"),
                                 status="interrupted" if interrupted else "failed")
                return False
            output = out[start:m.start()]
            code = int(m.group(1))
            pos = m.end()
            self._step_started(step, res)
            began, ended = watch.begin.get(n, t0), watch.end.get(n, now)
            if getattr(res, "_t0", None) is None or res.status == "running" and ci == 0:
                res._t0 = began
                res.started = _wall(began)
            cr = self._record(step, res, cmd, code, output, max(0.0, ended - began), began=began)
            if not self._after_command(step, res, cr, last=ci == len(step.commands) - 1, now=ended):
                return False
        return True

    def _interrupted(self, step, res):
        res.status = "interrupted"
        self.emit({"type": "step", "host": self.host.name, "step": step.name, "result": res})

    def _unfinished(self, step, res, cmd, output, status="failed"):
        """Record a command that did not finish (exit code None) and fail (or interrupt) its step."""
        self._step_started(step, res)
        self._record(step, res, cmd, None, output.strip(), 0.0)
        res.status = status
        res.ended = _wall(time.monotonic())
        self.emit({"type": "step", "host": self.host.name, "step": step.name, "result": res})

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
