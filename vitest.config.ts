import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // One test file at a time across projects: the end-to-end and chaos suites run real VMs on a
    // 2-core machine and must not compete with each other.
    maxWorkers: 1,
    projects: [
      {
        test: {
          name: "unit",
          include: ["packages/*/src/**/*.test.ts", "apps/*/src/**/*.test.ts"],
          exclude: ["**/*.int.test.ts", "**/node_modules/**", "**/dist/**"],
        },
      },
      {
        test: {
          // The repository itself: what the lockfile installs, what the test fixtures promise.
          name: "repo",
          include: ["test/repo/**/*.test.ts"],
        },
      },
      {
        test: {
          name: "integration",
          include: ["packages/*/src/**/*.int.test.ts", "apps/*/src/**/*.int.test.ts"],
          globalSetup: ["test/global-setup.ts"],
          testTimeout: 30_000,
          hookTimeout: 30_000,
        },
      },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          globalSetup: ["test/global-setup.ts", "test/e2e/guest-setup.ts", "test/e2e/cloud-guest-setup.ts"],
          testTimeout: 180_000,
          hookTimeout: 60_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: "chaos",
          include: ["test/chaos/**/*.test.ts"],
          globalSetup: ["test/e2e/guest-setup.ts"],
          testTimeout: 600_000,
          hookTimeout: 60_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
