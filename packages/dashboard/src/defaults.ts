/** The dashboard's session cookie: a random id; the token it stands for stays on the server. */
export const SESSION_COOKIE = "virtfleet_session";
/** How long a dashboard session lasts (seconds) unless signed out earlier. */
export const DEFAULT_SESSION_TTL_SEC = 8 * 3600;
/** Requests authenticated by the session cookie that change things must carry this header (CSRF guard). */
export const UI_HEADER = "x-virtfleet-ui";
/** Where the dashboard is served. */
export const DASHBOARD_PATH = "/ui/";
