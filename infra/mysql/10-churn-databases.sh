#!/bin/bash
# First start of the mysql container (empty data volume): the two databases of the stack and
# their least-privilege users. Run by the image's entrypoint from /docker-entrypoint-initdb.d.
#
#   optuna          Optuna's study storage   user optuna         ALL on optuna.* only (workers)
#                                            user optuna_reader  SELECT on optuna.* only (the dashboard)
#   adventureworks  the pipeline's source    user aw_reader  SELECT on adventureworks.* only (workers)
#                                            user aw_loader  ALL on adventureworks.* only (the seed job)
#
# Passwords come from the container's environment (.env). The statements are idempotent, so the
# script may also be re-run by hand against a running server:
#   docker compose exec mysql bash /docker-entrypoint-initdb.d/10-churn-databases.sh
set -euo pipefail

: "${MYSQL_ROOT_PASSWORD:?MYSQL_ROOT_PASSWORD is not set}"
: "${OPTUNA_DB_PASSWORD:?OPTUNA_DB_PASSWORD is not set}"
: "${OPTUNA_READER_PASSWORD:?OPTUNA_READER_PASSWORD is not set}"
: "${SOURCE_DB_READER_PASSWORD:?SOURCE_DB_READER_PASSWORD is not set}"
: "${SOURCE_DB_LOADER_PASSWORD:?SOURCE_DB_LOADER_PASSWORD is not set}"

# SQL string literal: double single quotes and backslashes
lit() { printf "'%s'" "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/''/g")"; }

defaults=$(mktemp)
trap 'rm -f "$defaults"' EXIT
printf '[client]\nuser=root\npassword="%s"\n' "$(printf '%s' "$MYSQL_ROOT_PASSWORD" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')" > "$defaults"

# During first-start initialisation the server listens on its socket only (MYSQL_UNIX_PORT or the default).
mysql --defaults-extra-file="$defaults" --protocol=socket <<SQL
CREATE DATABASE IF NOT EXISTS \`optuna\` CHARACTER SET utf8mb4;
CREATE DATABASE IF NOT EXISTS \`adventureworks\` CHARACTER SET utf8mb4;

CREATE USER IF NOT EXISTS 'optuna'@'%' IDENTIFIED BY $(lit "$OPTUNA_DB_PASSWORD");
GRANT ALL PRIVILEGES ON \`optuna\`.* TO 'optuna'@'%';

CREATE USER IF NOT EXISTS 'optuna_reader'@'%' IDENTIFIED BY $(lit "$OPTUNA_READER_PASSWORD");
GRANT SELECT ON \`optuna\`.* TO 'optuna_reader'@'%';

CREATE USER IF NOT EXISTS 'aw_reader'@'%' IDENTIFIED BY $(lit "$SOURCE_DB_READER_PASSWORD");
GRANT SELECT ON \`adventureworks\`.* TO 'aw_reader'@'%';

CREATE USER IF NOT EXISTS 'aw_loader'@'%' IDENTIFIED BY $(lit "$SOURCE_DB_LOADER_PASSWORD");
GRANT ALL PRIVILEGES ON \`adventureworks\`.* TO 'aw_loader'@'%';

FLUSH PRIVILEGES;
SQL
echo "churn: databases optuna, adventureworks and users optuna, optuna_reader, aw_reader, aw_loader are ready"
