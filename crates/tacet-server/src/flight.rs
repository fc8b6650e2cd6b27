//! Arrow Flight SQL, for pandas, Polars and ADBC clients that want Arrow without a conversion
//! (`[flight_sql] listen = "127.0.0.1:50051"` in the binary's configuration; off by default).
//!
//! Every call carries the tenant's read key as `authorization: Bearer <read key>`, which tells the tenant
//! (a client that logs in with a user name and password instead gets the same header back from the
//! handshake: user = tenant id, password = its read key). A statement is planned at `GetFlightInfo` (its
//! columns, or the error) and run at `DoGet`, both through `QueryEngine::sql`: the same tenant scope, row,
//! time and memory limits and refusals as `POST /v1/sql`. Its ticket holds the SQL only, so a ticket is
//! worth nothing without the key. A cut answer says so in the `x-tacet-truncated` response header.
//!
//! Without the server's `[tls]` certificate the listener stays on loopback (the key travels in a header);
//! with it, it speaks TLS only (`grpc+tls://`). Statements at once are bounded per tenant by the query
//! engine's slots, connections in all by `max_connections`, and requests per connection by
//! `max_streams`. Metrics: `tacet_flight_queries_total{tenant,outcome}`.
//!
//! Not here: prepared statements with parameters (send the SQL with its values), transactions (it is
//! read-only), the catalogue calls other than `GetSqlInfo`.

use std::pin::Pin;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    CommandGetSqlInfo, CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use base64::Engine;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::AppState;
use crate::access::Role;
use crate::tenants::{AuthError, TenantEntry};

/// What the listener allows at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections in all; more wait in the kernel's accept queue.
    pub connections: usize,
    /// Requests at once on one connection (HTTP/2 streams).
    pub streams: usize,
}

/// The Flight SQL service of one server.
pub struct FlightSql {
    state: AppState,
    info: SqlInfoData,
}

impl FlightSql {
    pub fn new(state: AppState) -> Self {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "Tacet");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "59");
        info.append(SqlInfo::FlightSqlServerReadOnly, true);
        info.append(SqlInfo::FlightSqlServerSql, true);
        info.append(SqlInfo::FlightSqlServerSubstrait, false);
        info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        info.append(SqlInfo::FlightSqlServerCancel, false);
        Self {
            state,
            info: info.build().expect("the server's SQL info builds"),
        }
    }

    /// The gRPC service, for `tonic::transport::Server`.
    pub fn service(self) -> FlightServiceServer<Self> {
        FlightServiceServer::new(self)
    }

    /// The tenant of the read key in `authorization: Bearer`.
    fn tenant<T>(&self, request: &Request<T>) -> Result<TenantEntry, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| {
                Status::unauthenticated(
                    "missing read key: send the header authorization: Bearer <read key>",
                )
            })?
            .to_str()
            .map_err(|_| Status::unauthenticated("the authorization header is not text"))?;
        let key = header.strip_prefix("Bearer ").ok_or_else(|| {
            Status::unauthenticated("the authorization header must be \"Bearer <read key>\"")
        })?;
        self.login(key.trim())
    }

    fn login(&self, key: &str) -> Result<TenantEntry, Status> {
        match self.state.tenants.authenticate(key, Role::Read) {
            Ok(t) => Ok(t.clone()),
            Err(AuthError::ReportsScope) => Err(Status::permission_denied(
                "this key reaches the canned reports only; Flight SQL needs a read key with scope sql",
            )),
            Err(e) => Err(Status::unauthenticated(
                crate::error::ApiError::from(e).message,
            )),
        }
    }

    fn counted<T>(tenant: &TenantEntry, answer: Result<T, Status>) -> Result<T, Status> {
        metrics::counter!("tacet_flight_queries_total", "tenant" => tenant.id.as_str().to_owned(),
            "outcome" => if answer.is_ok() { "ok" } else { "error" })
        .increment(1);
        answer
    }
}

/// A query's refusal as the gRPC status a client shows.
fn status(e: tacet_query::Error) -> Status {
    match e {
        tacet_query::Error::User(m) => Status::invalid_argument(m),
        tacet_query::Error::Refused(m) => Status::permission_denied(m),
        tacet_query::Error::Resources(m) => Status::resource_exhausted(m),
        tacet_query::Error::Busy(m) | tacet_query::Error::Replaced(m) => Status::unavailable(m),
        e @ tacet_query::Error::Internal(_) => {
            tracing::error!(error = %e, "flight sql query failed");
            Status::internal("internal error; the server log has the details")
        }
    }
}

type Answer<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    /// `Basic <tenant:read key>` (or a bearer key) in, the bearer header every later call sends out.
    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Answer<HandshakeResponse>>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let key = if let Some(basic) = header.strip_prefix("Basic ") {
            // Padded or not, as clients differ.
            let lenient = base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
            );
            let decoded = lenient
                .decode(basic.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    Status::unauthenticated("the Basic credentials are not base64 text")
                })?;
            let (user, key) = decoded.split_once(':').ok_or_else(|| {
                Status::unauthenticated("Basic credentials are <tenant id>:<read key>")
            })?;
            let tenant = self.login(key)?;
            if tenant.id.as_str() != user {
                return Err(Status::unauthenticated(format!(
                    "that read key is not tenant {user:?}'s (the user is the tenant id, the password its read key)"
                )));
            }
            key.to_owned()
        } else {
            self.tenant(&request)?;
            header.trim_start_matches("Bearer ").trim().to_owned()
        };
        let bearer = MetadataValue::try_from(format!("Bearer {key}"))
            .map_err(|_| Status::unauthenticated("the key cannot be sent back as a header"))?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        };
        let mut response: Response<Answer<HandshakeResponse>> =
            Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
        response.metadata_mut().insert("authorization", bearer);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let tenant = self.tenant(&request)?;
        let sql = query.query;
        // Planned (and refused, if it is) now, run at DoGet: a query under LIMIT 0; anything else is
        // refused by the engine before it runs (DDL, DML, COPY), or is EXPLAIN, which is cheap.
        let trimmed = sql.trim().trim_end_matches(';');
        let first = trimmed
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let plan = if matches!(first.as_str(), "SELECT" | "WITH" | "VALUES") {
            format!("SELECT * FROM ({trimmed}) AS q LIMIT 0")
        } else {
            trimmed.to_owned()
        };
        let planned = self
            .state
            .query
            .sql(&tenant.id, &plan)
            .await
            .map_err(status);
        let planned = Self::counted(&tenant, planned)?;
        let ticket = TicketStatementQuery {
            statement_handle: sql.into_bytes().into(),
        };
        let info = FlightInfo::new()
            .try_with_schema(&planned.schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(
                FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec())),
            )
            .with_descriptor(request.into_inner());
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let tenant = self.tenant(&request)?;
        let sql = String::from_utf8(ticket.statement_handle.to_vec()).map_err(|_| {
            Status::invalid_argument("the ticket is not a statement of this server")
        })?;
        let out = self.state.query.sql(&tenant.id, &sql).await.map_err(status);
        let out = Self::counted(&tenant, out)?;
        let truncated = out.truncated;
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(out.schema)
            .build(futures::stream::iter(out.batches.into_iter().map(Ok)))
            .map_err(Status::from)
            .boxed();
        let mut response = Response::new(stream as <Self as FlightService>::DoGetStream);
        response.metadata_mut().insert(
            "x-tacet-truncated",
            MetadataValue::from_static(if truncated { "true" } else { "false" }),
        );
        Ok(response)
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(&request)?;
        let ticket = Ticket::new(query.as_any().encode_to_vec());
        let info = FlightInfo::new()
            .try_with_schema(query.into_builder(&self.info).schema().as_ref())
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
            .with_descriptor(request.into_inner());
        Ok(Response::new(info))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.tenant(&request)?;
        let builder = query.into_builder(&self.info);
        let schema = builder.schema();
        let batch = builder.build();
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::once(async { batch }))
            .map_err(Status::from)
            .boxed();
        Ok(Response::new(stream))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// Serves Flight SQL on `listener` until the process ends; with `tls`, TLS only.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    limits: Limits,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
) -> Result<(), tonic::transport::Error> {
    let service = FlightSql::new(state).service();
    let server = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(limits.streams.max(1))
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(60)))
        .add_service(service);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.connections.max(1)));
    // Accepted here, handshaken each on its own task (a slow client holds up no one), handed to tonic.
    let (ready, mut accepted) = tokio::sync::mpsc::channel::<Conn>(16);
    tokio::spawn(async move {
        loop {
            let Ok(permit) = std::sync::Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let socket = match listener.accept().await {
                Ok((socket, _)) => socket,
                Err(e) => {
                    tracing::warn!(error = %e, "flight sql: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            let (ready, tls) = (ready.clone(), tls.clone());
            tokio::spawn(async move {
                let io = match tls {
                    None => Io::Plain(socket),
                    Some(config) => {
                        // The certificate as the HTTP listener has it now; gRPC needs HTTP/2.
                        let mut config = (*config.get_inner()).clone();
                        config.alpn_protocols = vec![b"h2".to_vec()];
                        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
                        let handshake = tokio::time::timeout(
                            std::time::Duration::from_secs(10),
                            acceptor.accept(socket),
                        );
                        match handshake.await {
                            Ok(Ok(stream)) => Io::Tls(Box::new(stream)),
                            _ => return,
                        }
                    }
                };
                let _ = ready
                    .send(Conn {
                        io,
                        _permit: permit,
                    })
                    .await;
            });
        }
    });
    let incoming = futures::stream::poll_fn(move |cx| {
        accepted
            .poll_recv(cx)
            .map(|c| c.map(Ok::<_, std::io::Error>))
    });
    server.serve_with_incoming(incoming).await
}

/// One accepted connection, holding its place among `max_connections`.
struct Conn {
    io: Io,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

enum Io {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl tokio::io::AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
