#!/bin/sh
# One-shot setup of the container stack (service "init"), safe to run again:
#   1. Rucio's schema, base VO and root account (Rucio's tools/bootstrap.py), unless already there;
#   2. the MAGIC ledger's tables, in Rucio's database;
#   3. the MAGIC site (RSEs, protocols, attributes, distances, accounts, limits, scopes);
#   4. [magic-stack] bootstrapped in Rucio's configuration table, which the daemons wait for (RUCIO_MAGIC_WAIT_FOR).
set -e

ROOT_EXISTS='
import sys
from rucio.common.types import InternalAccount
from rucio.core.account import account_exists
sys.exit(0 if account_exists(InternalAccount("root")) else 1)
'
if python3 -c "$ROOT_EXISTS" 2>/dev/null; then
    echo "init: Rucio database already bootstrapped"
else
    echo "init: creating Rucio's schema and root account"
    python3 /usr/local/rucio/tools/bootstrap.py
fi

echo "init: ledger tables"
python3 -c '
from rucio_magic_ext.ledger.engine import configured_url_and_schema, make_engine, upgrade
url, schema = configured_url_and_schema()
upgrade(make_engine(url, schema), schema)
'

echo "init: MAGIC site"
rucio-magic bootstrap --site "${MAGIC_SITE:-/etc/rucio-magic/site.cfg}"

echo "init: done"
python3 -c 'from rucio.core.config import set as config_set; config_set("magic-stack", "bootstrapped", "True")'
