"""What a report or a notification says about the run itself: which commit of the source was
shipped, who ran it, and the CI job it ran in (docs/commands.md#json-report)."""

import os
import subprocess
import time


def commit_of(source):
    """`git rev-parse HEAD` of the source directory, or None when it is not in a git work tree."""
    try:
        r = subprocess.run(["git", "-C", str(source), "rev-parse", "--verify", "--quiet", "HEAD"],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    sha = r.stdout.strip()
    return sha if r.returncode == 0 and sha else None


def run_url(env=None):
    """The CI job's page: GitHub Actions or GitLab CI variables, None outside CI."""
    env = os.environ if env is None else env
    if env.get("GITHUB_SERVER_URL") and env.get("GITHUB_REPOSITORY") and env.get("GITHUB_RUN_ID"):
        return f"{env['GITHUB_SERVER_URL'].rstrip('/')}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    return env.get("CI_JOB_URL") or None


def actor(env=None):
    """The person who started the CI pipeline (the operator is then the runner's account)."""
    env = os.environ if env is None else env
    return env.get("GITHUB_ACTOR") or env.get("GITLAB_USER_LOGIN") or None


def start(action, release, pipe, operator, hosts):
    """The part of the report known before the first host is contacted."""
    return {"action": action, "release": release, "exit_code": None, "started": round(time.time(), 3),
            "ended": None, "playbook": pipe.file, "source": pipe.source, "commit": commit_of(pipe.source),
            "operator": operator.token, "actor": actor(), "run_url": run_url(),
            "hosts": [{"host": h.name, "state": None} for h in hosts]}
