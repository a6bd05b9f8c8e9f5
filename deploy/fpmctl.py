"""Commands that talk to the PHP-FPM pool itself, through deploy/php/fpmctl.php on the host.

fpmctl.php is a small FastCGI client run with the host's php-cli: it sends requests to the
pool's own socket, so OPCache resets and probes happen inside the pool, never in the CLI
(FACTS: `php -r opcache_reset()` never reaches the pool).
"""

from pathlib import Path

from .commands import Upload

LOCAL_SCRIPT = Path(__file__).parent / "php" / "fpmctl.php"


def upload(ctx):
    return Upload(str(LOCAL_SCRIPT.relative_to(Path(__file__).parent.parent)), ctx.paths.fpmctl, 0o644,
                  desc="install the FastCGI client used to reach the pool")


def command(ctx, action, ok_codes=(0,), **flags):
    """`php fpmctl.php ACTION --socket=... --deploy-path=...`, every value quoted."""
    template = "{} {} " + action + " --socket={} --deploy-path={}"
    args = [ctx.php(), ctx.paths.fpmctl, ctx.host.fpm.socket, ctx.host.deploy_path]
    for key, value in flags.items():
        template += f" --{key.replace('_', '-')}={{}}"
        args.append(str(value))
    return ctx.cmd(template, *args, ok_codes=ok_codes, desc=f"fpm {action}")
