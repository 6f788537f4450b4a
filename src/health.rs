//! `GET /healthz` on the chat port, for load balancers and orchestrators: the answer as a pure
//! function of a small status the hub reads off its state, so its rules are tested without IO.
//!
//! 200 while the process can serve the whole chat; 503 while, started with `--redis`, it is not
//! linked to the others (it chats on alone, and a client sent to it would not see the rest of
//! the cluster), and while it shuts down (it closes its clients and takes no new one). The body is the same JSON object either way, so a probe that only looks at the
//! status and an operator who reads the body see one answer.

use serde::Serialize;

use crate::http::Reply;

/// What the health answer is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Open WebSocket connections (chat and echo).
    pub connections: usize,
    /// With `--redis`: whether the link to the other processes is up; None without it.
    pub cluster: Option<bool>,
    /// The server is shutting down (it closes its clients; a balancer should send no more).
    pub shutting_down: bool,
}

/// The body, in this field order.
#[derive(Serialize)]
struct Body {
    status: &'static str,
    connections: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<&'static str>,
}

impl Health {
    /// The reply to `GET /healthz` (`head_only`: to `HEAD`, the same headers without the body).
    pub fn reply(&self, head_only: bool) -> Reply {
        let linked = self.cluster.unwrap_or(true);
        let serving = linked && !self.shutting_down;
        let body = Body {
            status: match (self.shutting_down, linked) {
                (true, _) => "shutting down",
                (false, true) => "ok",
                (false, false) => "cluster link down",
            },
            connections: self.connections,
            cluster: self.cluster.map(|up| if up { "linked" } else { "down" }),
        };
        let json = serde_json::to_string(&body).unwrap_or_default();
        let (status, reason) = if serving { (200, "OK") } else { (503, "Service Unavailable") };
        // Every probe must see the state of now, never a cache's copy.
        let mut reply = Reply::new(status, reason, json).with("Cache-Control", "no-store");
        reply.content_type = "application/json";
        reply.head_only = head_only;
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(health: Health) -> (u16, String) {
        let reply = health.reply(false);
        (reply.status, String::from_utf8(reply.body.to_vec()).unwrap())
    }

    #[test]
    fn one_process_is_healthy_and_says_how_many_it_serves() {
        let (status, body) = answer(Health { connections: 3, cluster: None, shutting_down: false });
        assert_eq!((status, body.as_str()), (200, "{\"status\":\"ok\",\"connections\":3}\n"));
    }

    #[test]
    fn a_cluster_member_is_healthy_only_while_linked() {
        let linked = answer(Health { connections: 0, cluster: Some(true), shutting_down: false });
        assert_eq!(linked, (200, "{\"status\":\"ok\",\"connections\":0,\"cluster\":\"linked\"}\n".into()));
        let down = answer(Health { connections: 7, cluster: Some(false), shutting_down: false });
        assert_eq!(
            down,
            (503, "{\"status\":\"cluster link down\",\"connections\":7,\"cluster\":\"down\"}\n".into())
        );
    }

    #[test]
    fn head_gets_the_same_headers_and_no_body() {
        let health = Health { connections: 1, cluster: Some(false), shutting_down: false };
        let (get, head) = (health.reply(false), health.reply(true));
        assert_eq!(get.head(), head.head());
        let text = String::from_utf8(head.head()).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{text}");
        assert!(text.contains("\r\nContent-Type: application/json\r\n"), "{text}");
        assert!(text.contains("\r\nCache-Control: no-store\r\n"), "{text}");
        assert_eq!(head.into_parts().1, None);
    }

    #[test]
    fn a_process_shutting_down_is_out_of_rotation() {
        let (status, body) = answer(Health { connections: 2, cluster: None, shutting_down: true });
        assert_eq!((status, body.trim_end()), (503, r#"{"status":"shutting down","connections":2}"#));
        let linked = answer(Health { connections: 0, cluster: Some(true), shutting_down: true });
        assert_eq!(linked.0, 503);
        assert!(linked.1.starts_with(r#"{"status":"shutting down""#), "{}", linked.1);
    }
}
