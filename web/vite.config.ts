import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

// The API server `tomchat serve` listens here by default (DESIGN §5).
const backend = process.env.TOMCHAT_BACKEND ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  build: {
    // The Python package serves this folder at `/` (see src/tomchat/http/).
    outDir: "../src/tomchat/static",
    emptyOutDir: true,
    sourcemap: true,
  },
  server: {
    proxy: {
      "/api": backend,
      "/media": backend,
      "/socket.io": { target: backend, ws: true },
    },
  },
  test: {
    include: ["src/**/*.test.ts", "src/**/*.test.tsx"],
    // CSS imported by components means nothing in Node.
    css: false,
    environment: "node",
  },
});
