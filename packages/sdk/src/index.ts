/**
 * @virtfleet/sdk: the HTTP SDK of the virtfleet API (VirtfleetApi), for programs that talk to
 * apps/api with a token. Not to be confused with FleetClient (@virtfleet/fleet), the Redis
 * producer that the CLI, the API server and the labs use inside the fleet.
 */
export * from "./errors.js";
export * from "./virtfleet-api.js";
