"""What a check says: a Finding per check and host, pass / warn / fail, and the fix.

A Finding's `remedy` names the automatic fix deploy/remediate.py applies when the check fails
(a key of REMEDIES, several joined by "+" in the order they run), or None when only a human
can fix it; `fix` says what the tool does and what a human does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

PASS, WARN, FAIL = "pass", "warn", "fail"
RANK = {PASS: 0, WARN: 1, FAIL: 2}

# Remedy keys, in the order remediate.py applies them within one attempt: the files first,
# then the caches built from them, then the pool that caches the code, then the workers.
REMEDIES = ("acl", "artisan", "opcache_reset", "fpm_reload", "workers")

EVIDENCE_MAX = 600


@dataclass
class Finding:
    """One check's verdict for one host.

    remedy: a key of REMEDIES, several joined by "+" in the order they run, or None (a human
    fixes it). details: structured data for JSON reports (not printed in tables).
    """

    check: str
    status: str          # pass | warn | fail
    evidence: str
    fix: str
    remedy: str | None = None
    details: dict = field(default_factory=dict)

    @property
    def remedies(self):
        return tuple(self.remedy.split("+")) if self.remedy else ()

    @property
    def title(self):
        from .checks import TITLES
        return TITLES.get(self.check, self.check)

    def as_dict(self):
        return asdict(self)


def worst(findings):
    return max((f.status for f in findings), key=lambda s: RANK[s], default=PASS)


def clip(text, limit=EVIDENCE_MAX):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


class Items:
    """The items one check found; the worst status wins, the remedies of its items add up.

        items = Items("ownership")
        items.add(FAIL, "3 entries not writable", "tool: setfacl ...", "acl")
        return items.finding("everything writable")   # the evidence when nothing was added
    """

    def __init__(self, check):
        self.check = check
        self.items = []      # (status, evidence, fix, remedy)
        self.details = {}

    def add(self, status, evidence, fix="", remedy=None):
        self.items.append((status, evidence, fix, remedy))

    def finding(self, ok_evidence, ok_fix="nothing to do"):
        if not self.items:
            return Finding(self.check, PASS, clip(ok_evidence), ok_fix, None, self.details)
        top = max(RANK[s] for s, _, _, _ in self.items)
        status = next(s for s in (FAIL, WARN, PASS) if RANK[s] == top)
        # The worst items first, then the rest, so a table shows what matters.
        ordered = sorted(self.items, key=lambda i: -RANK[i[0]])
        evidence = "; ".join(e for s, e, _, _ in ordered if e)
        fixes = []
        for s, _, f, _ in ordered:
            if f and f not in fixes and s != PASS:
                fixes.append(f)
        remedies = []
        for s, _, _, r in ordered:
            if s == status and r:
                for key in r.split("+"):
                    if key not in remedies:
                        remedies.append(key)
        remedies.sort(key=REMEDIES.index)
        return Finding(self.check, status, clip(evidence), " | ".join(fixes) or ok_fix,
                       "+".join(remedies) or None, self.details)
