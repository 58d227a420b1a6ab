-- A counter whose concurrent increments add up.
--
-- Clients never send the count itself (two of them writing count = 5 + 1
-- at once would lose one): they send {"increment": n}, and the server adds
-- n to whatever the count is when the write arrives.
function merge(current, patch, origin)
  local n = patch.increment
  for key in pairs(patch) do
    if key ~= "increment" then
      return nil, key .. ": only increment may be sent"
    end
  end
  if math.type(n) ~= "integer" then
    return nil, "increment: expected an integer"
  end
  local count = current.count or 0
  if (n > 0 and count > math.maxinteger - n) or (n < 0 and count < math.mininteger - n) then
    return nil, "increment: the count would overflow"
  end
  local result = object()
  for key, value in pairs(current) do
    result[key] = value
  end
  result.count = count + n
  return result
end
