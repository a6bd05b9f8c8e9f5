"""What SIGINT (Ctrl-C), SIGTERM and SIGHUP mean during a deploy or a rollback (docs/commands.md).

Designed for the way CI cancels a job (GitHub Actions: SIGINT, SIGTERM 7.5 s later, SIGKILL
2.5 s after that), and for a person pressing Ctrl-C twice:

deploy
  1st signal  stop: no new host or batch starts; a host not yet switched is cancelled at once
              (its remote build is stopped, its new release removed: `untouched`); a host
              already switched finishes its session (reset, reload, verify; a rollback when
              that fails), so it ends on a proven release.
  2nd signal  abort: every running session is cut now and its remote commands killed; a host
              not switched is cleaned up as above; a switched host stays on the new release,
              which is complete but not verified: recorded as `needs human` in its history,
              the lock released. The report is written.
rollback      a rollback is how a fleet gets back to a known state, so the 1st signal only
              says so; the 2nd stops and aborts as the 2nd does for a deploy.
  last        the signal after those: leave at once (exit 130); locks may stay (`fab unlock`).
"""

import os
import signal
import threading

from .errors import EXIT_INTERRUPTED

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)   # SIGHUP: a closed terminal or SSH session


class Interrupts:
    def __init__(self, reporter, rollback=False):
        self.stop = threading.Event()    # no new host starts; unswitched hosts are cancelled
        self.abort = threading.Event()   # running sessions are cut now
        self.reporter = reporter
        self.rollback = rollback
        self.count = 0
        self.old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self.old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, old in self.old.items():
            signal.signal(sig, old)

    @property
    def interrupted(self):
        return self.stop.is_set()

    def _say(self, text):
        self.reporter({"type": "message", "text": text})

    def _handle(self, signum, frame):
        self.count += 1
        name = signal.Signals(signum).name
        steps = ["note", "stop"] if self.rollback else ["stop", "abort"]
        what = steps[self.count - 1] if self.count <= len(steps) else "leave"
        if what == "note":
            self._say(f"{name}: the rollback goes on on every host (it is what makes them consistent); "
                      "again to stop it where it is")
        elif what == "stop":
            self.stop.set()
            if self.rollback:
                self.abort.set()
                self._say(f"{name}: no new host will start; hosts in progress stop now, each in a recorded "
                          "state; again to leave at once")
            else:
                self._say(f"{name}: no new host will start; hosts not yet switched are cancelled now (their new "
                          "release removed), hosts already switched finish verifying. Again to stop those too.")
        elif what == "abort":
            self.abort.set()
            self._say(f"{name}: stopping every host now: not switched ones are cleaned up, switched ones stay on "
                      "the new release (complete, not verified) and are recorded as needing a human. "
                      "Again to leave at once (locks may stay).")
        else:
            self._say(f"{name}: leaving now; check the hosts with `fab releases` and clear their locks with "
                      "`fab unlock`")
            os._exit(EXIT_INTERRUPTED)
