/** What endProcess needs of a logger (pino's `flush`). */
export interface FlushableLogger {
  flush(callback?: (error?: Error) => void): void;
}

/**
 * Ends the process once the logger has written out what it buffered (with an asynchronous
 * destination; the apps log synchronously so that nothing is in flight): with an exit code, or by
 * raising again the signal that stopped it, which is how service managers (systemd) tell a clean
 * stop from a crash. Gives up waiting for the logger after `waitMs`.
 */
export function endProcess(logger: FlushableLogger, how: number | NodeJS.Signals, waitMs = 2000): void {
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    if (typeof how === "number") process.exit(how);
    process.removeAllListeners(how);
    process.kill(process.pid, how);
  };
  setTimeout(end, waitMs);
  logger.flush(() => end());
}
