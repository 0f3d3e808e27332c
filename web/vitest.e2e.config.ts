import { defineConfig } from 'vitest/config'

// End-to-end tests: the real gemini-proxy and mock-gemini binaries, driven through Debian's
// Chromium with playwright-core. One file, run in order: each scenario builds on the previous.
export default defineConfig({
  test: {
    environment: 'node',
    include: ['e2e/**/*.e2e.ts'],
    testTimeout: 120_000,
    hookTimeout: 600_000,
    fileParallelism: false,
    sequence: { concurrent: false },
    reporters: ['verbose'],
  },
})
