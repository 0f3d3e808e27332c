// Pages, the guard that sends anyone not logged in to the login page, and what happens when a
// page's code cannot be loaded.

import { createRouter, createWebHistory, type RouteLocationNormalized, type RouteRecordRaw } from 'vue-router'
import { useAuthStore } from '@/stores/auth'
import { i18n } from '@/i18n'
import { notifyError } from '@/composables/notify'
import AppLayout from '@/layouts/AppLayout.vue'
import LoginView from '@/views/LoginView.vue'

declare module 'vue-router' {
  interface RouteMeta {
    /** Reachable without logging in. */
    public?: boolean
    /** i18n key of the page title. */
    title?: string
  }
}

export const routes: RouteRecordRaw[] = [
  { path: '/login', name: 'login', component: LoginView, meta: { public: true, title: 'login.title' } },
  {
    path: '/',
    component: AppLayout,
    children: [
      { path: '', redirect: { name: 'dashboard' } },
      { path: 'dashboard', name: 'dashboard', component: () => import('@/views/DashboardView.vue'), meta: { title: 'nav.dashboard' } },
      { path: 'keys', name: 'keys', component: () => import('@/views/KeysView.vue'), meta: { title: 'nav.keys' } },
      { path: 'clients', name: 'clients', component: () => import('@/views/ClientsView.vue'), meta: { title: 'nav.clients' } },
      { path: 'config', name: 'config', component: () => import('@/views/ConfigView.vue'), meta: { title: 'nav.config' } },
      { path: 'requests', name: 'requests', component: () => import('@/views/RequestsView.vue'), meta: { title: 'nav.requests' } },
      { path: 'audit', name: 'audit', component: () => import('@/views/AuditView.vue'), meta: { title: 'nav.audit' } },
      { path: 'certificates', name: 'certificates', component: () => import('@/views/CertificatesView.vue'), meta: { title: 'nav.certificates' } },
      { path: ':pathMatch(.*)*', name: 'not-found', component: () => import('@/views/NotFoundView.vue'), meta: { title: 'notFound.title' } },
    ],
  },
]

export const router = createRouter({
  history: createWebHistory(import.meta.env.BASE_URL),
  routes,
})

router.beforeEach((to) => {
  const auth = useAuthStore()
  if (!to.meta.public && !auth.loggedIn) {
    return { name: 'login', query: to.fullPath === '/' ? {} : { redirect: to.fullPath } }
  }
  if (to.name === 'login' && auth.loggedIn) return { name: 'dashboard' }
  return true
})

/** A page's code (a lazy chunk, or its CSS) could not be fetched. */
export function isChunkLoadError(e: unknown): boolean {
  const m = e instanceof Error ? e.message : String(e)
  return /dynamically imported module|Unable to preload CSS|Importing a module script failed|error loading dynamically imported module/i.test(m)
}

const RELOAD_KEY = 'gp.chunkReload'

/**
 * A navigation failed (the router then stays where it was, URL and menu included). A page
 * whose code cannot be fetched means either the proxy is down, which is said, or the proxy now
 * serves a newer UI whose files have other names: then the whole app is loaded again, at the
 * page asked for (once a minute at most, so a broken build cannot loop).
 */
export async function navigationFailed(error: unknown, to: RouteLocationNormalized): Promise<void> {
  const t = i18n.global.t
  const page = to.meta.title ? t(to.meta.title) : to.fullPath
  if (isChunkLoadError(error)) {
    const up = await fetch('/healthz', { cache: 'no-store', credentials: 'omit' }).then((r) => r.ok, () => false)
    if (!up) {
      notifyError(t('errors.pageFailed', { page }), new Error(t('errors.unreachable')))
      return
    }
    let last = 0
    try {
      last = Number(sessionStorage.getItem(RELOAD_KEY) ?? 0)
      sessionStorage.setItem(RELOAD_KEY, String(Date.now()))
    } catch {
      // storage disabled: reload anyway
    }
    if (Date.now() - last > 60_000) {
      window.location.assign(to.fullPath)
      return
    }
  }
  notifyError(t('errors.pageFailed', { page }), error)
}

router.onError((error, to) => void navigationFailed(error, to))
