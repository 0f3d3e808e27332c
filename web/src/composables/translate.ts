// vue-i18n's `t` and `te` in the shape the text helpers take (utils/comment, utils/audit), which
// know nothing of Vue: a message with named parameters, a plural form when a count is given.

import { useI18n } from 'vue-i18n'
import type { Translate } from '@/utils/comment'

export function useTranslate(): { translate: Translate; exists: (key: string) => boolean } {
  const { t, te } = useI18n()
  return {
    translate: (k, named, n) => (n === undefined ? t(k, named) : t(k, named, n)),
    exists: (k) => te(k),
  }
}
