// Pages, and the guard that sends anyone not logged in to the login page.

import { createRouter, createWebHistory, type RouteRecordRaw } from 'vue-router'
import { useAuthStore } from '@/stores/auth'
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
