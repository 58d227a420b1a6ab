-- An append-only list: writers add entries at the end, and nobody (the
-- host included) removes or rewrites one.
--
-- A write is {"append": [entries...]}: appended in order, after whatever
-- concurrent writes appended first. Nothing else may be sent.
function merge(current, patch, origin)
  local add = patch.append
  for key in pairs(patch) do
    if key ~= "append" then
      return nil, key .. ": only append may be sent (the list is append-only)"
    end
  end
  if not isarray(add) then
    return nil, "append: expected an array of entries"
  end
  local entries = array()
  for i, entry in ipairs(current.entries or array()) do
    entries[i] = entry
  end
  for _, entry in ipairs(add) do
    entries[#entries + 1] = entry
  end
  local result = object()
  for key, value in pairs(current) do
    result[key] = value
  end
  result.entries = entries
  return result
end
