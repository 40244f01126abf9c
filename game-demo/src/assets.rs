//! The web page, its scripts and the browser client, embedded in the binary: no
//! build step, no CDN, works offline.

use actix_web::{web, HttpResponse};

const INDEX: &str = include_str!("../assets/index.html");
const ADMIN: &str = include_str!("../assets/admin.html");
const GAME_JS: &str = include_str!("../assets/game.js");
const ADMIN_JS: &str = include_str!("../assets/admin.js");
const STYLE: &str = include_str!("../assets/style.css");
/// The framework's browser client, served as-is.
const VOLLEY_JS: &str = include_str!("../../framework/js/volley.js");

fn file(content: &'static str, kind: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(kind)
        .insert_header(("cache-control", "no-cache"))
        .body(content)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    const HTML: &str = "text/html; charset=utf-8";
    const JS: &str = "text/javascript; charset=utf-8";
    cfg.route("/", web::get().to(|| async { file(INDEX, HTML) }))
        .route("/admin.html", web::get().to(|| async { file(ADMIN, HTML) }))
        .route("/game.js", web::get().to(|| async { file(GAME_JS, JS) }))
        .route("/admin.js", web::get().to(|| async { file(ADMIN_JS, JS) }))
        .route(
            "/volley.js",
            web::get().to(|| async { file(VOLLEY_JS, JS) }),
        )
        .route(
            "/style.css",
            web::get().to(|| async { file(STYLE, "text/css; charset=utf-8") }),
        );
}
