//! The console's principal: a signed-in agent (session token from
//! `/v1/console/login`), its role, the platform it serves, and the
//! authorization matrix of the console's endpoints.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::http::middleware::hash_api_key;
use crate::http::problem::Problem;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Agent,
    Reviewer,
    Admin,
    Auditor,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "agent" => Some(Self::Agent),
            "reviewer" => Some(Self::Reviewer),
            "admin" => Some(Self::Admin),
            "auditor" => Some(Self::Auditor),
            _ => None,
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Reviewer => "reviewer",
            Self::Admin => "admin",
            Self::Auditor => "auditor",
        }
    }
}

/// The signed-in agent.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    pub role: Role,
    /// The platform the agent serves; None for installation staff, who
    /// serve every platform of the installation.
    pub platform: Option<String>,
}

impl Agent {
    /// The actor recorded in the audit log.
    pub fn actor(&self) -> String {
        format!("agent:{}", self.id)
    }

    /// Whether the agent may see and act on what this platform owns.
    pub fn serves(&self, platform: &str) -> bool {
        self.platform.as_deref().is_none_or(|p| p == platform)
    }
}

/// The platform a console action is for: the agent's own, or for
/// installation staff the one named, or the installation's only platform.
pub async fn platform_for(
    st: &AppState,
    a: &Agent,
    named: Option<&str>,
) -> Result<String, Problem> {
    let live = st.store.live_platforms().await?;
    match (&a.platform, named) {
        (Some(own), None) => Ok(own.clone()),
        (Some(own), Some(n)) if n == own => Ok(own.clone()),
        (Some(_), Some(_)) => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Not allowed",
            "the agent serves another platform",
        )
        .field("platform")
        .fix("leave platform out: the agent's own platform is used")),
        (None, Some(n)) if live.iter().any(|p| p == n) => Ok(n.to_owned()),
        (None, Some(_)) => Err(Problem::unprocessable(
            "no platform of this installation has this name",
        )
        .field("platform")
        .fix("name a platform by its API key name (lethe apikey create --name)")),
        (None, None) => match live.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(
                Problem::unprocessable("the installation has no platform yet")
                    .fix("create the platform's API key first (lethe apikey create)"),
            ),
            _ => Err(Problem::unprocessable(
                "this installation serves several platforms; say which one",
            )
            .field("platform")
            .fix("send platform: the API key name of the user's platform")),
        },
    }
}

/// A session token as stored (hashed).
pub fn hash_token(t: &str) -> String {
    hash_api_key(t)
}

/// Console authentication: a session token from /v1/console/login.
pub async fn auth(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let Some(token) = token.filter(|t| t.starts_with("ls_") && t.len() < 100) else {
        return Problem::new(
            StatusCode::UNAUTHORIZED,
            "console-auth",
            "Not signed in",
            "the console needs a session token",
        )
        .field("Authorization")
        .fix("sign in with POST /v1/console/login and send `Authorization: Bearer <token>`")
        .into_response();
    };
    match st
        .store
        .console_session(&hash_token(&token), jiff::Timestamp::now())
        .await
    {
        Ok(Some((id, role, platform))) => match Role::parse(&role) {
            Some(role) => {
                req.extensions_mut().insert(Agent { id, role, platform });
                next.run(req).await
            }
            None => Problem::internal().into_response(),
        },
        Ok(None) => Problem::new(
            StatusCode::UNAUTHORIZED,
            "console-auth",
            "Not signed in",
            "the session is unknown or expired",
        )
        .field("Authorization")
        .fix("sign in again")
        .into_response(),
        Err(e) => Problem::from(e).into_response(),
    }
}

/// The roles allowed on each console endpoint (the authorization matrix).
pub fn allowed(route: &str) -> &'static [Role] {
    use Role::*;
    match route {
        "create_case" | "hotline" | "counter" | "export" | "manual_task" => &[Agent],
        "read_case" => &[Agent, Reviewer, Auditor],
        "review" | "claims" => &[Reviewer],
        "create_agent" | "rotate_kek" | "datamap_accept" => &[Admin],
        "datamap" => &[Agent, Reviewer, Auditor, Admin],
        "report" => &[Auditor, Admin],
        "overdue" => &[Agent, Reviewer, Auditor, Admin],
        "support" => &[Agent],
        // The holder's message is personal: agents who answer read it.
        "support_read" => &[Agent],
        _ => &[],
    }
}

pub fn require(a: &Agent, route: &str) -> Result<(), Problem> {
    if allowed(route).contains(&a.role) {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Not allowed",
            format!("the role {} may not do this", a.role.as_str()),
        )
        .fix("ask an agent with the right role"))
    }
}

/// For the operations both a platform and its agents use: a console
/// session token (`ls_…`) is an agent's, anything else an API key.
pub async fn key_or_console(st: State<AppState>, req: Request, next: Next) -> Response {
    let console = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ls_"));
    if console {
        auth(st, req, next).await
    } else {
        crate::http::middleware::auth(st, req, next).await
    }
}
