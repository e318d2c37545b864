#!/usr/bin/env node
// Committed so npm links the command before the first build; the code is in dist/ (npm run build).
import "../dist/main.js";
