//! The web UI in-process: every request goes through the whole router (security
//! middleware included) with an in-memory backend. One test binary, one file per
//! subject:
//!
//! - `common`: the shared helpers (`Ui`, `Session`, `ui()`, request builders,
//!   answer readers, `Ui::login`).
//! - `setup_login`: first setup with the one-time token, signing in and out,
//!   wrong passwords, the login rate limit.
//! - `refusals`: CSRF, origin, Host, session, method and body-size refusals;
//!   security headers.
//! - `hostile_text`: device and alert text built to break the page renders inert.
//! - `devices_list`: filtering, sorting and searching the devices list; a
//!   thousand devices.
//! - `device_actions`: each device action by form and by API.
//! - `alerts`: acknowledging alerts.
//! - `notifications`: the Notifications page and its "send a test", by form
//!   and by API.
//! - `dns`: the DNS query log: the Queries page and its filter, a device's DNS
//!   section, the overview's counts, the API, hostile names, the resolver off.
//! - `pages`: the other pages, the backend down, password change and reset,
//!   live events, static assets.
//! - `openapi`: the OpenAPI document against the routes and the bodies.
//! - `serving`: the UI on a real loopback socket (timeouts, caps).
//! - `traffic`: the top talkers, a device's charts, counting off.

mod common;

mod alerts;
mod device_actions;
mod devices_list;
mod dns;
mod hostile_text;
mod notifications;
mod openapi;
mod pages;
mod refusals;
mod serving;
mod setup_login;
mod traffic;
