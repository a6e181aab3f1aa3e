#!/usr/bin/env bash
# MariaDB first-start hook (mounted into /docker-entrypoint-initdb.d by
# compose/docker-compose.yml): creates the nodes' user, granted only what a node needs on
# its database and nothing elsewhere.
#
# What a node needs (actors/src/store): SELECT, INSERT, UPDATE, DELETE for the data path
# (SELECT … FOR UPDATE included) and CREATE for its migrations, which run
# `CREATE DATABASE IF NOT EXISTS` and `CREATE TABLE IF NOT EXISTS` on every leader start
# (MariaDB checks the CREATE privilege even when the database exists), and ALTER for the
# one `ALTER TABLE entities AUTO_INCREMENT = …` that claims a fresh database for a shard
# other than 0 (its ids start at the shard's first). GET_LOCK needs no privilege. A future
# migration that adds an index needs INDEX added here.
# testkit/tests/compose.rs runs a real cluster as a user with exactly these privileges.
#
# The entrypoint sources this file when it is not executable and runs it when it is, so it
# neither exits nor changes shell options, and talks to the server through its socket as
# root in both cases.

instaface_privileges="SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER"

instaface_sql_string() { # escapes $1 for a single-quoted SQL string
	local s=${1//\\/\\\\}
	printf '%s' "${s//\'/\\\'}"
}

if [ -z "${MARIADB_DATABASE:-}" ] || [ -z "${INSTAFACE_DB_USER:-}" ] || [ -z "${INSTAFACE_DB_PASSWORD:-}" ]; then
	echo "10-instaface-user.sh: MARIADB_DATABASE, INSTAFACE_DB_USER and INSTAFACE_DB_PASSWORD must be set" >&2
	false
else
	echo "10-instaface-user.sh: granting $instaface_privileges on $MARIADB_DATABASE to $INSTAFACE_DB_USER"
	# In a GRANT's database name `_` is a wildcard: escape it.
	MYSQL_PWD=$MARIADB_ROOT_PASSWORD mariadb --protocol=socket -uroot -hlocalhost \
		--socket="${SOCKET:-/run/mysqld/mysqld.sock}" <<-EOSQL
		CREATE DATABASE IF NOT EXISTS \`${MARIADB_DATABASE}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
		CREATE USER IF NOT EXISTS '$(instaface_sql_string "$INSTAFACE_DB_USER")'@'%'
			IDENTIFIED BY '$(instaface_sql_string "$INSTAFACE_DB_PASSWORD")';
		GRANT ${instaface_privileges} ON \`${MARIADB_DATABASE//_/\\_}\`.*
			TO '$(instaface_sql_string "$INSTAFACE_DB_USER")'@'%';
	EOSQL
fi
