// Copies text. navigator.clipboard needs a secure context (https or localhost); an admin UI
// reached over plain http elsewhere falls back to a hidden textarea and execCommand.

export async function copyText(text: string): Promise<void> {
  if (typeof navigator !== 'undefined' && navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text)
    return
  }
  const area = document.createElement('textarea')
  area.value = text
  area.setAttribute('readonly', '')
  area.style.position = 'fixed'
  area.style.opacity = '0'
  document.body.appendChild(area)
  area.select()
  try {
    if (!document.execCommand('copy')) throw new Error('the browser refused to copy')
  } finally {
    document.body.removeChild(area)
  }
}
