//! The browser client as an npm package (`js/package.json`, `volley-client`) in Node.js,
//! against the real server (`js/test/package.mjs`): through its ES module and its
//! CommonJS entry, with Node's WebSocket, the `ws` package, or none (polling), over
//! both transports. Skipped, saying so, without Node.js 20 or later.

use volley::client::Transport;
use volley::VolleyBuilder;

use crate::browser_client::{run_node, transport_name};
use crate::common::*;

async fn the_npm_package_in_node(transport: Transport) {
    let (disconnects, _seen) = Disconnects::new();
    let server = serve(
        VolleyBuilder::default()
            .namespace("/chat", test_namespace(disconnects))
            .namespace("/admin", admin_namespace("s3cret")),
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/js/test/package.mjs");
    run_node(script, &[&server.url, transport_name(transport)]).await;
}

over_transports!(the_npm_package_in_node);
