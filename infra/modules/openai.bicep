// An Azure OpenAI account with its chat model deployment, and the deployments of the more models
// people may pick (MODELS) when there are any. Key authentication is off
// (disableLocalAuth): callers sign in with Microsoft Entra ID, and the web app's identity gets
// the "Cognitive Services OpenAI User" role in openai-access.bicep.

@description('Account name; also its custom subdomain, <name>.openai.azure.com, which Entra sign-in needs.')
param name string

@description('Azure region: pick one that offers the model (see docs/deploy.md).')
param location string

@description('Tags for the account.')
param tags object = {}

@description('Name of the chat deployment: what AZURE_OPENAI_DEPLOYMENT names.')
param deploymentName string

@description('Model to deploy, e.g. gpt-4.1-mini.')
param modelName string

@description('Model version, e.g. 2025-04-14.')
param modelVersion string

@description('Deployment type: GlobalStandard (pay per token, routed worldwide), Standard (in region), DataZoneStandard.')
param deploymentSku string

@description('Capacity in thousands of tokens per minute; limited by your quota for the model and region.')
@minValue(1)
param deploymentCapacity int

@description('More deployments, for the models people may pick next to the chat one (main.bicep\'s models): [{ name, model, version (empty: the model\'s default version), sku, capacity }]. Created one at a time, after the chat deployment: an account takes one deployment change at a time.')
param deployments array = []

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  name: name
  location: location
  tags: tags
  kind: 'OpenAI'
  sku: {
    name: 'S0'
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    customSubDomainName: name
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
    }
  }
}

resource chatDeployment 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: account
  name: deploymentName
  sku: {
    name: deploymentSku
    capacity: deploymentCapacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: modelName
      version: modelVersion
    }
    versionUpgradeOption: 'OnceCurrentVersionExpired'
  }
}

@batchSize(1)
resource modelDeployments 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = [for extra in deployments: {
  parent: account
  name: extra.name
  sku: {
    name: extra.sku
    capacity: extra.capacity
  }
  properties: {
    model: union({
      format: 'OpenAI'
      name: extra.model
    }, empty(extra.version) ? {} : {
      version: extra.version
    })
    versionUpgradeOption: 'OnceCurrentVersionExpired'
  }
  dependsOn: [
    chatDeployment
  ]
}]

output name string = account.name
output endpoint string = account.properties.endpoint
output deploymentName string = chatDeployment.name
