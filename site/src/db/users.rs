//! Users (name, role, argon2 hash) and API tokens (name, role, SHA-256 of the token).

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::{int, now_ms, text, Db};
use crate::error::ApiError;
use crate::roles::Role;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// Whether the user can log in with a password (else only with a certificate).
    pub has_password: bool,
    pub created_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub name: String,
    pub role: Role,
    pub created_by: String,
    pub created_ms: i64,
}

fn role_of(s: &str) -> Result<Role, ApiError> {
    s.parse()
        .map_err(|e: String| ApiError::internal(format!("stored {e}")))
}

impl Db {
    pub async fn add_user(
        &self,
        name: &str,
        role: Role,
        password_hash: Option<&str>,
    ) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO users (name, role, password_hash, created_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(name)
        .bind(role.to_string())
        .bind(password_hash)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(|e| ApiError::from_insert(e, format!("user {name} exists")))?;
        Ok(())
    }

    pub async fn remove_user(&self, name: &str) -> Result<(), ApiError> {
        let n = sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(ApiError::not_found(format!("no user {name}")));
        }
        Ok(())
    }

    pub async fn users(&self) -> Result<Vec<User>, ApiError> {
        let rows =
            sqlx::query("SELECT name, role, password_hash, created_ms FROM users ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                use sqlx::Row;
                Ok(User {
                    name: text(r, "name")?,
                    role: role_of(&text(r, "role")?)?,
                    has_password: r.try_get::<Option<String>, _>("password_hash")?.is_some(),
                    created_ms: int(r, "created_ms")?,
                })
            })
            .collect()
    }

    /// A user's role and password hash.
    pub async fn user_login(&self, name: &str) -> Result<Option<(Role, Option<String>)>, ApiError> {
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT role, password_hash FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        match row {
            None => Ok(None),
            Some((role, hash)) => Ok(Some((role_of(&role)?, hash))),
        }
    }

    pub async fn add_token(
        &self,
        name: &str,
        role: Role,
        hash: &str,
        by: &str,
    ) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO tokens (name, role, hash, created_by, created_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(name)
        .bind(role.to_string())
        .bind(hash)
        .bind(by)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(|e| ApiError::from_insert(e, format!("token {name} exists")))?;
        Ok(())
    }

    pub async fn remove_token(&self, name: &str) -> Result<(), ApiError> {
        let n = sqlx::query("DELETE FROM tokens WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(ApiError::not_found(format!("no token {name}")));
        }
        Ok(())
    }

    pub async fn tokens(&self) -> Result<Vec<Token>, ApiError> {
        let rows =
            sqlx::query("SELECT name, role, created_by, created_ms FROM tokens ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(Token {
                    name: text(r, "name")?,
                    role: role_of(&text(r, "role")?)?,
                    created_by: text(r, "created_by")?,
                    created_ms: int(r, "created_ms")?,
                })
            })
            .collect()
    }

    /// The token whose hash is `hash`: its name and role.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<(String, Role)>, ApiError> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT name, role FROM tokens WHERE hash = $1")
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?;
        match row {
            None => Ok(None),
            Some((n, r)) => Ok(Some((n, role_of(&r)?))),
        }
    }
}
