//! Users and API tokens (admin only).

use axum::extract::{Path, State};
use axum::Json;

use super::auth::Caller;
use super::AppState;
use crate::api::{Done, Token, TokenReply, TokenRequest, User, UserRequest};
use crate::error::ApiError;
use crate::roles::Role;
use crate::{names, secrets};

pub async fn list(st: State<AppState>, c: Caller) -> Result<Json<Vec<User>>, ApiError> {
    c.may_read(Role::Admin, "users")?;
    Ok(Json(st.db.users().await?))
}

pub async fn add(
    st: State<AppState>,
    c: Caller,
    Json(req): Json<UserRequest>,
) -> Result<Json<Done>, ApiError> {
    let detail = format!(
        "role={} password={}",
        req.role,
        if req.password.is_some() {
            "set"
        } else {
            "none"
        }
    );
    c.audited(&st, Role::Admin, "user.add", &req.name, &detail, async {
        names::check("user name", &req.name)?;
        let hash = match &req.password {
            Some(p) => {
                secrets::check_password(p).map_err(|e| ApiError::bad_request(e.to_string()))?;
                let p = p.clone();
                Some(
                    tokio::task::spawn_blocking(move || secrets::hash_password(&p))
                        .await
                        .map_err(|e| ApiError::internal(e.to_string()))??,
                )
            }
            None => None,
        };
        st.db.add_user(&req.name, req.role, hash.as_deref()).await?;
        Ok(Json(Done {
            done: format!("user {} added ({})", req.name, req.role),
        }))
    })
    .await
}

pub async fn remove(
    st: State<AppState>,
    c: Caller,
    Path(name): Path<String>,
) -> Result<Json<Done>, ApiError> {
    c.audited(&st, Role::Admin, "user.remove", &name, "", async {
        names::check("user name", &name)?;
        st.db.remove_user(&name).await?;
        Ok(Json(Done {
            done: format!("user {name} removed"),
        }))
    })
    .await
}

pub async fn tokens(st: State<AppState>, c: Caller) -> Result<Json<Vec<Token>>, ApiError> {
    c.may_read(Role::Admin, "tokens")?;
    Ok(Json(st.db.tokens().await?))
}

pub async fn add_token(
    st: State<AppState>,
    c: Caller,
    Json(req): Json<TokenRequest>,
) -> Result<Json<TokenReply>, ApiError> {
    let detail = format!("role={}", req.role);
    c.audited(&st, Role::Admin, "token.add", &req.name, &detail, async {
        names::check("token name", &req.name)?;
        let token = secrets::new_token();
        st.db
            .add_token(&req.name, req.role, &secrets::token_hash(&token), &c.0.who)
            .await?;
        Ok(Json(TokenReply {
            name: req.name.clone(),
            token,
        }))
    })
    .await
}

pub async fn remove_token(
    st: State<AppState>,
    c: Caller,
    Path(name): Path<String>,
) -> Result<Json<Done>, ApiError> {
    c.audited(&st, Role::Admin, "token.remove", &name, "", async {
        names::check("token name", &name)?;
        st.db.remove_token(&name).await?;
        Ok(Json(Done {
            done: format!("token {name} removed"),
        }))
    })
    .await
}
