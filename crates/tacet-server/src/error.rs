//! Errors as HTTP responses: a status and a JSON body that says what to do.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::BodyError;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after_secs: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 503 with `Retry-After: 1`: nothing was stored, and the same request may succeed shortly.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            retry_after_secs: Some(1),
        }
    }

    /// 429 with `Retry-After` (whole seconds, at least 1).
    pub fn too_many(message: impl Into<String>, wait: std::time::Duration) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: message.into(),
            retry_after_secs: Some(wait.as_secs_f64().ceil().max(1.0) as u32),
        }
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; the details are in the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(json!({ "error": self.message }))).into_response();
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        let status = match e {
            BodyError::TooLarge { .. }
            | BodyError::DecompressedTooLarge { .. }
            | BodyError::TooManyEvents { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::UnsupportedEncoding(_) | BodyError::UnsupportedContentType(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            BodyError::Empty | BodyError::BadGzip(_) | BodyError::Json(_) => {
                StatusCode::BAD_REQUEST
            }
        };
        Self::new(status, e.to_string())
    }
}

impl From<tacet_query::Error> for ApiError {
    fn from(e: tacet_query::Error) -> Self {
        use tacet_query::Error as Q;
        match e {
            Q::User(m) => Self::new(StatusCode::BAD_REQUEST, m),
            Q::Refused(m) => Self::new(StatusCode::FORBIDDEN, m),
            Q::Resources(m) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, m),
            Q::Busy(m) | Q::Replaced(m) => Self::unavailable(m),
            Q::Internal(m) => Self::internal(m),
        }
    }
}

impl From<tacet_ingest::Error> for ApiError {
    fn from(e: tacet_ingest::Error) -> Self {
        use tacet_ingest::Error as I;
        match e {
            I::Backpressure { .. } | I::Partitions { .. } => Self::unavailable(e.to_string()),
            I::Invalid(m) => Self::new(StatusCode::BAD_REQUEST, m),
            I::Wal(w) if w.is_retryable() || matches!(w, tacet_wal::Error::Closed) => {
                tracing::warn!(error = %w, "write-ahead log refused a request");
                Self::unavailable(match w {
                    tacet_wal::Error::Full { .. } => w.to_string(),
                    tacet_wal::Error::Closed => "the server is shutting down; retry against another node or later".into(),
                    _ => "cannot write the write-ahead log (the disk may be full); nothing was stored, retry later".into(),
                })
            }
            other => Self::internal(other),
        }
    }
}

impl From<crate::tenants::AuthError> for ApiError {
    fn from(e: crate::tenants::AuthError) -> Self {
        use crate::tenants::AuthError as A;
        match e {
            A::WrongRole { .. } | A::ReportsScope => {
                Self::new(StatusCode::FORBIDDEN, e.to_string())
            }
            _ => Self::unauthorized(e.to_string()),
        }
    }
}
