"""Commands that talk to the PHP-FPM pool itself, through deploy/remote/fpmctl.php on the host.

fpmctl.php is a small FastCGI client run with the host's php-cli: it sends requests to the
pool's own socket, so OPCache resets and probes happen inside the pool, never in the CLI
(`php -r opcache_reset()` never reaches the pool: docs/why.md).
"""

from . import remote

LOCAL_SCRIPT = remote.local_path("fpmctl.php")


def command(ctx, action, ok_codes=(0,), **flags):
    """`php -n fpmctl.php ACTION --socket=... --deploy-path=...`, every value quoted.

    -n: no php.ini. fpmctl.php needs only what PHP is built with (streams, json, pcre), and the
    CLI's configured extensions cost each start 11 ms of the host's CPU on the lab's Debian
    PHP (35 extensions): a deploy runs fpmctl.php three times per host (docs/benchmark.md)."""
    template = "{} -n {} " + action + " --socket={} --deploy-path={}"
    args = [ctx.php(), ctx.paths.fpmctl, ctx.host.fpm.socket, ctx.host.deploy_path]
    for key, value in flags.items():
        template += f" --{key.replace('_', '-')}={{}}"
        args.append(str(value))
    return ctx.cmd(template, *args, ok_codes=ok_codes, desc=f"fpm {action}")
