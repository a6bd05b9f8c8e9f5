"""migrate: `php artisan migrate --force` ONCE per deploy, on one host, before any host switches.

The host is the one marked `primary: true` in the inventory, else the first host of the first
batch; every other host's plan shows the step as "runs on HOST". The fleet holds every host's
switch (the gate before activate) until the migration ended: if it failed, no host switches and
every new release is discarded. The host's history records which migrations the release ran.
The schema is never rolled back by the tool: `fab rollback` to a release that lacks migrations
the database has says so (expand/contract: docs/pipeline.md).
"""

from .. import remote
from . import BUILD, Kind

KIND = Kind("migrate", order=45, phase=BUILD, once_per_fleet=True,
            summary="php artisan migrate --force, once per deploy on one host, before any host switches")
SIGNAL = "migrated"


def parse(section):
    options = section.string_list("options", [])
    for option in options:
        if not option.startswith("--"):
            raise section.error("options", f"'{option}' is not an option of artisan migrate",
                                "e.g. [--step] or [--database=mysql]")
    return {"options": options}


def plan(settings, ctx):
    return [remote.run(ctx, "schema.sh", "migrate", ctx.host.deploy_path, ctx.release_dir, ctx.release, ctx.php(),
                       *settings["options"], signal=SIGNAL, cut_on_stop=False,
                       desc="php artisan migrate --force (once per deploy)")]
