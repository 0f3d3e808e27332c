// User preferences kept in this browser: language and colour scheme.

import { defineStore } from 'pinia'
import { ref, watch } from 'vue'
import { i18n, detectLocale, type Locale, LOCALES } from '@/i18n'

const LOCALE_KEY = 'gp.locale'
const DARK_KEY = 'gp.dark'

function readStorage(key: string): string | null {
  try {
    return localStorage.getItem(key)
  } catch {
    return null
  }
}

function writeStorage(key: string, value: string): void {
  try {
    localStorage.setItem(key, value)
  } catch {
    // storage disabled: the choice lasts for this page only
  }
}

function systemDark(): boolean {
  return typeof window !== 'undefined' && typeof window.matchMedia === 'function' && window.matchMedia('(prefers-color-scheme: dark)').matches
}

export const usePrefsStore = defineStore('prefs', () => {
  const saved = readStorage(LOCALE_KEY)
  const locale = ref<Locale>(LOCALES.includes(saved as Locale) ? (saved as Locale) : detectLocale())
  const savedDark = readStorage(DARK_KEY)
  const dark = ref<boolean>(savedDark === null ? systemDark() : savedDark === '1')

  function apply() {
    i18n.global.locale.value = locale.value
    document.documentElement.lang = locale.value
    document.documentElement.classList.toggle('dark', dark.value)
  }

  function setLocale(l: Locale) {
    locale.value = l
    writeStorage(LOCALE_KEY, l)
  }

  function setDark(d: boolean) {
    dark.value = d
    writeStorage(DARK_KEY, d ? '1' : '0')
  }

  watch([locale, dark], apply, { immediate: true })
  return { locale, dark, setLocale, setDark }
})
