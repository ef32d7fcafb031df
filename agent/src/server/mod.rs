//! flatnetd's thin servers: the control API on its unix socket ([`api`])
//! and `/metrics` + `/healthz` over HTTP ([`http`]). Neither owns state.

pub mod api;
pub mod http;

pub use api::{ApiLimits, bind_socket, serve_api};
pub use http::serve_metrics;
