// A static site: `astro build` writes dist/, which any static file server can serve.
import { defineConfig } from "astro/config";

export default defineConfig({
  server: { host: "127.0.0.1", port: 4321 },
  devToolbar: { enabled: false },
});
