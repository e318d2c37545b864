export * from "./documents.js";
export * from "./seed-iso.js";
