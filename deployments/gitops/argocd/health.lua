-- Argo CD health of every llmgateway.io kind (LlmGateway, LlmProvider, RoutePolicy, ApiKey,
-- LlmQuota),
-- read from the status the operator writes: its Ready condition for the current generation.
local hs = {}
local generation = obj.metadata and obj.metadata.generation
local status = obj.status
if obj.spec ~= nil and obj.spec.disabled == true then
  hs.status = "Suspended"
  hs.message = "disabled"
  return hs
end
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the llm-gateway operator"
  return hs
end
if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "the operator has not seen the latest change yet"
  return hs
end
for _, condition in ipairs(status.conditions) do
  if condition.type == "Ready" then
    if condition.status == "True" then
      hs.status = "Healthy"
    elseif condition.reason == "Progressing" or condition.reason == "ModelServerProgressing" then
      hs.status = "Progressing"
    else
      hs.status = "Degraded"
    end
    hs.message = (condition.reason or "") .. ": " .. (condition.message or "")
    return hs
  end
end
hs.status = "Progressing"
hs.message = "no Ready condition yet"
return hs
