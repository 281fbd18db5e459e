// Azure Managed Redis (Microsoft.Cache/redisEnterprise), for running Brook on several
// instances or workers: answers travel on Redis Streams and Stop reaches every instance.
// Azure Cache for Redis (Microsoft.Cache/redis) is retiring and closed to new customers, so
// this is its successor. TLS only; Brook authenticates with the database's access key, which
// appservice.bicep reads with listKeys() and never outputs.

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

output name string = cluster.name
output hostName string = cluster.properties.hostName
output databaseId string = database.id
