import { fileURLToPath, URL } from 'node:url'
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

// The build is embedded into the gemini-proxy binary (build.rs, src/admin/ui.rs) and served at
// `/` on the admin listener; files under assets/ carry content hashes and are cached for good.
export default defineConfig({
  plugins: [vue()],
  resolve: {
    alias: { '@': fileURLToPath(new URL('./src', import.meta.url)) },
  },
  build: {
    target: 'es2022',
    // Default splitting: ECharts goes with the dashboard, CodeMirror with the config page.
    // (A manualChunks function here defeated tree-shaking of Element Plus.)
    chunkSizeWarningLimit: 700,
  },
  server: {
    // `npm run dev`: the API of a proxy running with its admin listener on 127.0.0.1:9090.
    proxy: {
      '/api': process.env.GEMINI_PROXY_ADMIN ?? 'http://127.0.0.1:9090',
    },
  },
})
