//! The prober's upstream call: `GET {prefix}/v1beta/models/{model}` with the key, on the data
//! plane's connection pool. Costs no quota.

use super::relay::buffer_body;
use super::Shared;
use crate::pool::prober::{Probe, ProbeResult};
use crate::pool::PoolKey;
use crate::http1;
use async_trait::async_trait;
use std::sync::Arc;

pub struct UpstreamProbe {
    pub shared: Arc<Shared>,
}

#[async_trait]
impl Probe for UpstreamProbe {
    async fn probe(&self, key: &PoolKey, model: &str) -> ProbeResult {
        let rt = self.shared.runtime.load_full();
        let target = &rt.target;
        let up = &target.settings;
        let mut head = Vec::with_capacity(256);
        head.extend_from_slice(format!("GET {}/v1beta/models/{model} HTTP/1.1\r\nhost: {}\r\n", up.path_prefix, up.host_header).as_bytes());
        http1::write_header(&mut head, b"x-goog-api-key", key.secret.expose().as_bytes());
        head.extend_from_slice(b"\r\n");
        let Ok(mut conn) = self.shared.upstream.connect(target).await else { return ProbeResult::Inconclusive };
        if conn.send(&mut head, &[], up.connect_timeout).await.is_err() {
            return ProbeResult::Inconclusive;
        }
        let Ok(res) = conn.read_head(up.connect_timeout * 3).await else { return ProbeResult::Inconclusive };
        let complete = buffer_body(&mut conn, &res, "GET", up.connect_timeout, 1 << 20).await.is_ok();
        if complete && res.keeps_alive() {
            conn.buf.clear();
            self.shared.upstream.checkin(conn);
        }
        match res.status {
            // 404: the key was accepted; only the model is unknown.
            200 | 404 => ProbeResult::Works,
            400 | 401 | 403 => ProbeResult::StillRefused,
            _ => ProbeResult::Inconclusive,
        }
    }
}
