import { z } from "zod";

/** A pino log level (LOG_LEVEL of every component). */
export const LogLevel = z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]);
export type LogLevel = z.infer<typeof LogLevel>;
/** LOG_LEVEL when unset. */
export const DEFAULT_LOG_LEVEL: LogLevel = "info";
