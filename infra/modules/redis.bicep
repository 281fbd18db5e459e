// Azure Managed Redis (Microsoft.Cache/redisEnterprise), for running Brook on several
// instances or workers: answers travel on Redis Streams and Stop reaches every instance.
// Azure Cache for Redis (Microsoft.Cache/redis) is retiring and closed to new customers, so
// this is its successor. TLS only; Brook authenticates with the database's access key. REDIS_URL,
// which carries that key, is built here with listKeys() and written straight into the Key Vault:
// it never passes through a parameter or an output, only the secret's URI does.

@description('Cluster name; the endpoint is <name>.<region>.redis.azure.net:10000.')
param name string

@description('Azure region.')
param location string

@description('Tags for the cluster.')
param tags object = {}

@description('SKU: Balanced_B0 is the smallest (about 0.5 GB).')
param skuName string = 'Balanced_B0'

@description('Replicate the data (SLA); without it the cache is cheaper and fine for streams that the database also keeps.')
param highAvailability bool = true

@description('Key Vault (in this resource group) that receives the REDIS_URL secret.')
param keyVaultName string

resource cluster 'Microsoft.Cache/redisEnterprise@2025-07-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
  }
  properties: {
    minimumTlsVersion: '1.2'
    highAvailability: highAvailability ? 'Enabled' : 'Disabled'
    publicNetworkAccess: 'Enabled'
  }
}

// EnterpriseCluster: one endpoint that behaves like a single Redis, as redis-py's Redis.from_url
// expects. NoEviction: streams expire by themselves (STREAM_EXPIRE_SECONDS), never silently.
resource database 'Microsoft.Cache/redisEnterprise/databases@2025-07-01' = {
  parent: cluster
  name: 'default'
  properties: {
    clientProtocol: 'Encrypted'
    port: 10000
    clusteringPolicy: 'EnterpriseCluster'
    evictionPolicy: 'NoEviction'
    accessKeysAuthentication: 'Enabled'
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// uriComponent: the key may contain / + =. Regenerating the key changes nothing here until the
// next `azd provision` writes a new version of this secret (docs/deploy.md).
resource urlSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'redis-url'
  properties: {
    value: 'rediss://:${uriComponent(database.listKeys().primaryKey)}@${cluster.properties.hostName}:10000/0'
    contentType: 'text/plain'
  }
}

output name string = cluster.name
output urlSecretUri string = urlSecret.properties.secretUri
