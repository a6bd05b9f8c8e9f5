"""Step kinds. Each module PLANS: it turns (settings, context) into Commands and never runs them.

A step module has:
  KIND         the name used in playbooks
  parse(sec)   validate its settings (a yamlfile.Section) and return them
  plan(s, ctx) the commands, as data
  ON_ROLLBACK  whether the step is re-planned for the previous release when rolling back
"""

from . import activate, artisan, composer, fpm_reload, opcache_reset, ownership, run, shared, sync, verify

KINDS = {m.KIND: m for m in (sync, shared, ownership, composer, artisan, activate, opcache_reset, fpm_reload, verify,
                             run)}
