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
            Q::Internal(m) => Self::internal(m),
        }
    }
}

impl From<tacet_ingest::Error> for ApiError {
    fn from(e: tacet_ingest::Error) -> Self {
        match e {
            tacet_ingest::Error::Backpressure { .. } => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!("{e}"),
                retry_after_secs: Some(1),
            },
            other => Self::internal(other),
        }
    }
}
