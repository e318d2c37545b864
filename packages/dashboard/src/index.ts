/**
 * @virtfleet/dashboard: the web dashboard served by the API at /ui/ (static Preact + htm app,
 * sign-in sessions, the create form's schemas). ApiServer registers it with registerDashboard.
 */
export * from "./defaults.js";
export * from "./plugin.js";
export * from "./session-store.js";
