// Row selection for bulk actions. The rule: a selection only ever holds rows the operator can
// see. Rows hidden by a filter, or gone from the list (deleted, or absent from a refresh), leave
// the selection, so a bulk action can never touch something that is not on the screen.

/** The selected ids that are still shown, in `visible` order. */
export function pruneSelection(selected: ReadonlySet<string>, visible: readonly string[]): Set<string> {
  return new Set(visible.filter((id) => selected.has(id)))
}

/** The header checkbox: ticked when every shown row is selected, dashed when only some are. */
export function headerState(selected: ReadonlySet<string>, visible: readonly string[]): { all: boolean; some: boolean } {
  const n = visible.filter((id) => selected.has(id)).length
  const all = visible.length > 0 && n === visible.length
  return { all, some: n > 0 && !all }
}

/** What clicking the header checkbox selects: every shown row, or none when all already are. */
export function toggleAll(selected: ReadonlySet<string>, visible: readonly string[]): Set<string> {
  return headerState(selected, visible).all ? new Set() : new Set(visible)
}

export type BulkOp = 'enable' | 'disable' | 'reset'

/**
 * Splits the selected keys into those the operation changes and those it skips: disabling a
 * key that is already disabled would replace the reason it was disabled for (an invalid key
 * would read "disabled by an operator"), and enabling one that is not disabled does nothing.
 */
export function planBulk<K extends { state: string }>(op: BulkOp, keys: readonly K[]): { targets: K[]; skipped: K[] } {
  const skip = (k: K) => (op === 'disable' ? k.state === 'disabled' : op === 'enable' ? k.state !== 'disabled' : false)
  return { targets: keys.filter((k) => !skip(k)), skipped: keys.filter(skip) }
}
