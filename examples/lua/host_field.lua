-- A field only the host may change: "status" is set by the server's owner
-- (through the host API); clients write the other fields as with lww, and
-- a client's write that touches status is refused.
function merge(current, patch, origin)
  if origin ~= "host" and patch.status ~= nil then
    return nil, "status: only the host may change it (tenant " .. origin.tenant .. ")"
  end
  -- RFC 7396 on the top level: null deletes a field, anything else
  -- replaces it whole.
  local result = object()
  for key, value in pairs(current) do
    result[key] = value
  end
  for key, value in pairs(patch) do
    if value == null then
      result[key] = nil
    else
      result[key] = value
    end
  end
  return result
end
