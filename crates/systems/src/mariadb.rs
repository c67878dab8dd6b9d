//! MariaDB: three queries to observe, one statement per change to apply.

use crate::{secret, Error};
use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder, Row};
use pic2_inventory::{ClientHost, ValidInventory};
use pic2_plan::ObservedDatabases;
use pic2_render::databases::{account, ident, quote};
use std::time::Duration;

pub struct Databases {
    conn: Conn,
}

impl Databases {
    pub fn connect(inv: &ValidInventory) -> Result<Self, Error> {
        let db = &inv.database;
        let password = secret::read(&db.admin_password_file.value)?;
        let url = db.url.value.to_string();
        let opts = OptsBuilder::new()
            .ip_or_hostname(Some(db.url.value.host.clone()))
            .tcp_port(db.url.value.port)
            .user(Some(db.admin_user.value.clone()))
            .pass(Some(password))
            .prefer_socket(false)
            .tcp_connect_timeout(Some(Duration::from_secs(5)));
        let conn = Conn::new(opts).map_err(|source| Error::SqlConnect {
            url,
            source: Box::new(source),
        })?;
        Ok(Databases { conn })
    }

    /// Databases with their comments, users, and database-level grants.
    pub fn observe(&mut self) -> Result<(ObservedDatabases, u32), Error> {
        let mut out = ObservedDatabases::default();
        let rows: Vec<(String, String)> = self
            .conn
            .query("SELECT SCHEMA_NAME, SCHEMA_COMMENT FROM information_schema.SCHEMATA")
            .map_err(Error::sql("listing databases"))?;
        out.databases = rows.into_iter().collect();
        // signed in MariaDB's mysql.user view: read as such, a negative one is no cap
        let users: Vec<(String, String, i64)> = self
            .conn
            .query("SELECT User, Host, max_user_connections FROM mysql.user")
            .map_err(Error::sql("listing users"))?;
        for (user, host, limit) in users {
            let limit = u32::try_from(limit).unwrap_or(0);
            out.connection_limits
                .insert((user.clone(), host.clone()), limit);
            out.users.insert((user, host));
        }
        // mysql.db has one `…_priv` column per privilege; "all" is every one but GRANT OPTION.
        let rows: Vec<Row> = self
            .conn
            .query("SELECT * FROM mysql.db")
            .map_err(Error::sql("listing grants"))?;
        for row in rows {
            let mut key = (String::new(), String::new(), String::new());
            let mut all = true;
            for (i, col) in row.columns_ref().iter().enumerate() {
                let name = col.name_str();
                let value: Option<String> = row.get(i);
                match name.as_ref() {
                    "Db" => key.0 = value.unwrap_or_default(),
                    "User" => key.1 = value.unwrap_or_default(),
                    "Host" => key.2 = value.unwrap_or_default(),
                    "Grant_priv" => {}
                    n if n.ends_with("_priv") => all &= value.as_deref() == Some("Y"),
                    _ => {}
                }
            }
            out.grants.insert(key, all);
        }
        Ok((out, 3))
    }

    fn exec(&mut self, what: impl Into<String>, sql: &str) -> Result<(), Error> {
        self.conn.query_drop(sql).map_err(Error::sql(what))
    }

    pub fn create_database(&mut self, name: &str, comment: &str) -> Result<(), Error> {
        let sql = format!(
            "CREATE DATABASE {} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci COMMENT {}",
            ident(name),
            quote(comment)
        );
        self.exec(format!("creating database {name}"), &sql)
    }

    pub fn set_comment(&mut self, name: &str, comment: &str) -> Result<(), Error> {
        self.exec(
            format!("setting the comment of {name}"),
            &format!(
                "ALTER DATABASE {} COMMENT = {}",
                ident(name),
                quote(comment)
            ),
        )
    }

    pub fn create_user(
        &mut self,
        user: &str,
        host: &ClientHost,
        password: &str,
    ) -> Result<(), Error> {
        let sql = format!(
            "CREATE USER {} IDENTIFIED BY {}",
            account(user, host),
            quote(password)
        );
        self.exec(format!("creating user '{user}'@'{}'", host.as_str()), &sql)
    }

    pub fn set_user_password(
        &mut self,
        user: &str,
        host: &ClientHost,
        password: &str,
    ) -> Result<(), Error> {
        let sql = format!(
            "ALTER USER {} IDENTIFIED BY {}",
            account(user, host),
            quote(password)
        );
        self.exec(
            format!("setting the password of '{user}'@'{}'", host.as_str()),
            &sql,
        )
    }

    pub fn grant_all(&mut self, db: &str, user: &str, host: &ClientHost) -> Result<(), Error> {
        self.exec(
            format!("granting {db} to '{user}'@'{}'", host.as_str()),
            &pic2_render::databases::grant_all(db, user, host),
        )
    }

    pub fn limit_connections(
        &mut self,
        user: &str,
        host: &ClientHost,
        max: u32,
    ) -> Result<(), Error> {
        let sql = format!(
            "ALTER USER {} WITH MAX_USER_CONNECTIONS {max}",
            account(user, host)
        );
        self.exec(
            format!("limiting the connections of '{user}'@'{}'", host.as_str()),
            &sql,
        )
    }

    pub fn revoke_pattern(&mut self, pattern: &str, user: &str, host: &str) -> Result<(), Error> {
        self.exec(
            format!("revoking {pattern}.* from '{user}'@'{host}'"),
            &pic2_render::databases::revoke_all(pattern, user, host),
        )
    }

    pub fn drop_user(&mut self, user: &str, host: &str) -> Result<(), Error> {
        self.exec(
            format!("dropping user '{user}'@'{host}'"),
            &format!("DROP USER {}@{}", quote(user), quote(host)),
        )
    }

    pub fn drop_database(&mut self, name: &str) -> Result<(), Error> {
        self.exec(
            format!("dropping database {name}"),
            &format!("DROP DATABASE {}", ident(name)),
        )
    }
}
